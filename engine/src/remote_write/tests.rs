//! The decoder held to prost (the generated decoder of the same `.proto` files): whatever
//! prost reads, the decoder reads to the same series, and what prost refuses it refuses;
//! plus malformed, truncated and hostile requests, and the header helpers.

use gauntlet_proto::io::prometheus::write::v2 as pb2;
use gauntlet_proto::prometheus as pb1;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::encoding::put_uvarint;

/// A series as both decoders can state it: labels, samples (t, value bits, start
/// timestamp), counts, and 2.0 extras.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Series {
    labels: Vec<(String, String)>,
    samples: Vec<(i64, u64, i64)>,
    histograms: u32,
    /// Each histogram sample as its timestamp and the model's debug text.
    histogram_samples: Vec<(i64, String)>,
    exemplars: u32,
    created: i64,
    metric_type: MetricType,
    help: String,
    unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Request {
    series: Vec<Series>,
    metadata: Vec<(MetricType, String, String, String)>,
}

/// A histogram prost decoded, in the model as Prometheus's receivers convert it (`ToIntHistogram`
/// / `ToFloatHistogram`: float when the count is `count_float`), as timestamp and debug text.
macro_rules! pb_histogram {
    ($pb:ident, $h:expr) => {{
        use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
        let h = $h;
        let spans = |s: &[$pb::BucketSpan]| -> Vec<Span> {
            s.iter().map(|s| Span::new(s.offset, s.length)).collect()
        };
        let hint = u8::try_from(h.reset_hint)
            .ok()
            .and_then(CounterResetHint::from_u8)
            .unwrap_or_default();
        let custom: std::sync::Arc<[f64]> = if h.schema == -53 {
            h.custom_values.clone().into()
        } else {
            std::sync::Arc::from([])
        };
        let v = match h.count {
            Some($pb::histogram::Count::CountFloat(c)) => HistogramValue::Float(FloatHistogram {
                counter_reset_hint: hint,
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: match h.zero_count {
                    Some($pb::histogram::ZeroCount::ZeroCountFloat(z)) => z,
                    _ => 0.0,
                },
                count: c,
                sum: h.sum,
                positive_spans: spans(&h.positive_spans),
                negative_spans: spans(&h.negative_spans),
                positive_buckets: h.positive_counts.clone(),
                negative_buckets: h.negative_counts.clone(),
                custom_values: custom.into(),
            }),
            c => HistogramValue::Int(Histogram {
                counter_reset_hint: hint,
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: match h.zero_count {
                    Some($pb::histogram::ZeroCount::ZeroCountInt(z)) => z,
                    _ => 0,
                },
                count: match c {
                    Some($pb::histogram::Count::CountInt(n)) => n,
                    _ => 0,
                },
                sum: h.sum,
                positive_spans: spans(&h.positive_spans),
                negative_spans: spans(&h.negative_spans),
                positive_buckets: h.positive_deltas.clone(),
                negative_buckets: h.negative_deltas.clone(),
                custom_values: custom.into(),
            }),
        };
        (h.timestamp, format!("{v:?}"))
    }};
}

fn ours(v: Version, buf: &[u8]) -> Result<Request, DecodeError> {
    let mut b = WriteBatch::new();
    decode(v, buf, &mut b)?;
    let mut out = Request::default();
    for (i, s) in b.series.iter().enumerate() {
        let st = |k: usize| b.start_timestamps.get(k).copied().unwrap_or(0);
        out.series.push(Series {
            labels: b
                .series_labels(i)
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            samples: (s.samples.start as usize..s.samples.end as usize)
                .map(|k| (b.samples[k].t, b.samples[k].v.to_bits(), st(k)))
                .collect(),
            histograms: s.histograms,
            histogram_samples: b
                .series_histograms(i)
                .iter()
                .map(|h| (h.t, format!("{:?}", h.h)))
                .collect(),
            exemplars: s.exemplars,
            created: s.created_timestamp,
            metric_type: s.metric_type,
            help: b.series_help(i).to_string(),
            unit: b.series_unit(i).to_string(),
        });
    }
    assert_eq!(
        b.histograms,
        b.series
            .iter()
            .map(|s| s.histograms as usize)
            .sum::<usize>()
    );
    assert_eq!(
        b.exemplars,
        b.series.iter().map(|s| s.exemplars as usize).sum::<usize>()
    );
    assert!(b.start_timestamps.is_empty() || b.start_timestamps.len() == b.samples.len());
    out.metadata = b
        .metadata
        .iter()
        .map(|m| {
            let s = |x: &str| x.to_string();
            (m.metric_type, s(m.family), s(m.help), s(m.unit))
        })
        .collect();
    Ok(out)
}

fn prost_v1(buf: &[u8]) -> Option<Request> {
    let r = pb1::WriteRequest::decode(buf).ok()?;
    let series = r
        .timeseries
        .into_iter()
        .map(|t| Series {
            labels: t.labels.into_iter().map(|l| (l.name, l.value)).collect(),
            samples: t
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits(), 0))
                .collect(),
            histograms: t.histograms.len() as u32,
            histogram_samples: t.histograms.iter().map(|h| pb_histogram!(pb1, h)).collect(),
            exemplars: t.exemplars.len() as u32,
            created: 0,
            metric_type: MetricType::Unknown,
            help: String::new(),
            unit: String::new(),
        })
        .collect();
    let metadata = r
        .metadata
        .into_iter()
        .map(|m| {
            let t = MetricType::from_wire(m.r#type as u64);
            (t, m.metric_family_name, m.help, m.unit)
        })
        .collect();
    Some(Request { series, metadata })
}

/// prost's reading of a 2.0 request, with references resolved as the receivers resolve them;
/// `Err` when prost reads it but a reference is out of range or odd in number.
fn prost_v2(buf: &[u8]) -> Option<Result<Request, ()>> {
    let r = pb2::Request::decode(buf).ok()?;
    let sym = |i: u32| -> Result<String, ()> {
        match r.symbols.get(i as usize) {
            Some(s) => Ok(s.clone()),
            None if i == 0 => Ok(String::new()),
            None => Err(()),
        }
    };
    let resolve = |refs: &[u32]| -> Result<Vec<(String, String)>, ()> {
        if !refs.len().is_multiple_of(2) {
            return Err(());
        }
        refs.chunks(2)
            .map(|p| Ok((sym(p[0])?, sym(p[1])?)))
            .collect()
    };
    let mut series = Vec::new();
    for t in &r.timeseries {
        let Ok(mut labels) = resolve(&t.labels_refs) else {
            return Some(Err(()));
        };
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        for e in &t.exemplars {
            if resolve(&e.labels_refs).is_err() {
                return Some(Err(()));
            }
        }
        let md = t.metadata.unwrap_or_default();
        let (Ok(help), Ok(unit)) = (sym(md.help_ref), sym(md.unit_ref)) else {
            return Some(Err(()));
        };
        series.push(Series {
            labels,
            samples: t
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits(), s.start_timestamp))
                .collect(),
            histograms: t.histograms.len() as u32,
            histogram_samples: t.histograms.iter().map(|h| pb_histogram!(pb2, h)).collect(),
            exemplars: t.exemplars.len() as u32,
            created: 0,
            metric_type: MetricType::from_wire(md.r#type as u64),
            help,
            unit,
        });
    }
    Some(Ok(Request {
        series,
        metadata: Vec::new(),
    }))
}

/// The decoder must agree with prost: same reading when prost reads it; an error when prost
/// refuses it; an error only where Gauntlet is knowingly stricter (groups, references).
fn agree(v: Version, buf: &[u8]) -> Result<Request, DecodeError> {
    let got = ours(v, buf);
    let want = match v {
        Version::V1 => prost_v1(buf).map(Ok),
        Version::V2 => prost_v2(buf),
    };
    match (&got, want) {
        (Ok(g), Some(Ok(w))) => assert_eq!(*g, w, "{buf:x?}"),
        (Ok(g), w) => panic!("decoded {g:?} where prost gives {w:?}: {buf:x?}"),
        (Err(_), None) => {}
        // Refusals beyond prost's: groups, which prost skips, and symbol references, which
        // prost does not resolve (and truncates to 32 bits, where Gauntlet refuses them).
        (Err(e), Some(Err(()))) => assert!(group(e) || reference(e), "{e}"),
        (Err(e), Some(Ok(_))) => assert!(
            group(e) || matches!(e, DecodeError::BadSymbolRef { .. }),
            "refused what prost reads: {e}"
        ),
    }
    if let Err(e) = &got {
        assert!(e.to_string().len() < 400, "{e}");
    }
    got
}

fn label(n: &str, v: &str) -> pb1::Label {
    pb1::Label {
        name: n.into(),
        value: v.into(),
    }
}

fn sample(t: i64, v: f64) -> pb1::Sample {
    pb1::Sample {
        value: v,
        timestamp: t,
    }
}

fn histogram() -> pb1::Histogram {
    pb1::Histogram {
        count: Some(pb1::histogram::Count::CountInt(12)),
        sum: 3.5,
        schema: -2,
        zero_threshold: 1e-9,
        zero_count: Some(pb1::histogram::ZeroCount::ZeroCountFloat(1.0)),
        negative_spans: vec![pb1::BucketSpan {
            offset: -3,
            length: 2,
        }],
        negative_deltas: vec![1, -1],
        positive_counts: vec![0.5, 2.0],
        custom_values: vec![1.0, 2.0, 4.0],
        reset_hint: 2,
        timestamp: 1_700_000_000_000,
        ..Default::default()
    }
}

fn v1_request() -> pb1::WriteRequest {
    pb1::WriteRequest {
        timeseries: vec![
            pb1::TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("code", "200"),
                    label("path", "/api/v1/çé"),
                ],
                samples: vec![
                    sample(1_700_000_000_000, 1.0),
                    sample(1_700_000_015_000, f64::from_bits(0x7ff0_0000_0000_0002)),
                ],
                exemplars: vec![pb1::Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 0.25,
                    timestamp: 1_700_000_000_001,
                }],
                histograms: vec![],
            },
            // Empty names and values, and no samples: decoded as sent, refused later by
            // validation.
            pb1::TimeSeries {
                labels: vec![label("", "x"), label("b", "")],
                histograms: vec![histogram(), histogram()],
                ..Default::default()
            },
            pb1::TimeSeries::default(),
            pb1::TimeSeries {
                labels: vec![label("__name__", &"x".repeat(300))],
                samples: vec![sample(-5, -0.0)],
                ..Default::default()
            },
        ],
        metadata: vec![pb1::MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: "".into(),
        }],
    }
}

fn v2_request() -> pb2::Request {
    let symbols: Vec<String> = [
        "",
        "__name__",
        "up",
        "job",
        "node",
        "zone",
        "ü",
        "Help text.",
        "s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    pb2::Request {
        symbols,
        timeseries: vec![
            pb2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    pb2::Sample {
                        value: 1.0,
                        timestamp: 10,
                        start_timestamp: 0,
                    },
                    pb2::Sample {
                        value: 2.0,
                        timestamp: 20,
                        start_timestamp: 5,
                    },
                ],
                metadata: Some(pb2::Metadata {
                    r#type: 2,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                exemplars: vec![pb2::Exemplar {
                    labels_refs: vec![3, 4],
                    value: 1.5,
                    timestamp: 11,
                }],
                ..Default::default()
            },
            // Unsorted: sorted on the way in, as Prometheus and Thanos sort.
            pb2::TimeSeries {
                labels_refs: vec![5, 6, 1, 2, 3, 4],
                histograms: vec![pb2::Histogram {
                    count: Some(pb2::histogram::Count::CountFloat(3.0)),
                    positive_deltas: vec![5, -2],
                    start_timestamp: 9,
                    ..Default::default()
                }],
                ..Default::default()
            },
            pb2::TimeSeries::default(),
        ],
    }
}

#[test]
fn v1_round_trip() {
    let req = v1_request();
    let got = agree(Version::V1, &req.encode_to_vec()).unwrap();
    assert_eq!(got.series.len(), 4);
    assert_eq!(got.series[0].labels[2].1, "/api/v1/çé");
    assert_eq!(got.series[0].samples[1].1, 0x7ff0_0000_0000_0002);
    assert_eq!((got.series[0].exemplars, got.series[1].histograms), (1, 2));
    assert_eq!(got.metadata[0].0, MetricType::Counter);
    // An empty body is an empty request.
    assert_eq!(agree(Version::V1, &[]).unwrap(), Request::default());
}

#[test]
fn v2_round_trip() {
    let req = v2_request();
    let got = agree(Version::V2, &req.encode_to_vec()).unwrap();
    let s = &got.series[0];
    assert_eq!(
        s.labels,
        [
            ("__name__".into(), "up".into()),
            ("job".into(), "node".into())
        ]
    );
    assert_eq!(
        s.samples,
        [(10, 1f64.to_bits(), 0), (20, 2f64.to_bits(), 5)]
    );
    assert_eq!(
        (s.metric_type, s.help.as_str(), s.unit.as_str()),
        (MetricType::Gauge, "Help text.", "s")
    );
    let names: Vec<&str> = got.series[1].labels.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(names, ["__name__", "job", "zone"]);
    assert_eq!(got.series[1].histograms, 1);
    // A 1.0 body read as 2.0 is an empty request: 2.0 reserves 1.0's field numbers.
    let v1 = v1_request().encode_to_vec();
    assert_eq!(agree(Version::V2, &v1).unwrap().series.len(), 0);
}

/// Exemplars are decoded with their labels (2.0's references resolved), value and timestamp,
/// each series pointing at its own.
#[test]
fn exemplars_are_decoded_in_both_versions() {
    let v1 = v1_request().encode_to_vec();
    let mut wb = WriteBatch::new();
    decode(Version::V1, &v1, &mut wb).unwrap();
    let e = wb.series_exemplars(0);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].value, e[0].t), (0.25, 1_700_000_000_001));
    assert_eq!(wb.exemplar_pairs(&e[0]), [("trace_id", "abc")]);
    assert!(wb.series_exemplars(1).is_empty());
    let v2 = v2_request().encode_to_vec();
    let mut wb = WriteBatch::new();
    decode(Version::V2, &v2, &mut wb).unwrap();
    let e = wb.series_exemplars(0);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].value, e[0].t), (1.5, 11));
    assert_eq!(wb.exemplar_pairs(&e[0]), [("job", "node")]);
    assert!(wb.series_exemplars(1).is_empty());
}

/// Appends a length-delimited field.
fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_uvarint(out, u64::from(field << 3 | 2));
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Unknown fields of every wire type (varint, 64-bit, length-delimited, 32-bit), numbered
/// past every message's own and one with a multi-byte key.
fn unknowns() -> Vec<u8> {
    let mut u = vec![0x78, 0x96, 0x01]; // 15: varint
    u.extend_from_slice(&[0x71, 1, 2, 3, 4, 5, 6, 7, 8]); // 14: fixed64
    put_len(&mut u, 13, b"\xff\xfe not utf-8");
    u.extend_from_slice(&[0x6d, 1, 2, 3, 4]); // 13: fixed32
    u.extend_from_slice(&[0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]); // field 2^29-1: varint
    u
}

#[test]
fn unknown_fields_are_skipped_at_every_level() {
    let u = unknowns();
    let with = |m: Vec<u8>| [u.clone(), m, u.clone()].concat();
    let mut lab = Vec::new();
    put_len(&mut lab, 1, b"__name__");
    put_len(&mut lab, 2, b"up");
    let mut smp = Vec::new();
    smp.push(0x09);
    smp.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
    smp.extend_from_slice(&[0x10, 0x2a]);
    let mut ts = Vec::new();
    put_len(&mut ts, 1, &with(lab));
    put_len(&mut ts, 2, &with(smp.clone()));
    let mut req = u.clone();
    put_len(&mut req, 1, &with(ts));
    // Field 2 is reserved in 1.0 (Cortex's "source"): skipped too.
    put_len(&mut req, 2, b"cortex");
    let got = agree(Version::V1, &with(req)).unwrap();
    assert_eq!(got.series[0].labels, [("__name__".into(), "up".into())]);
    assert_eq!(got.series[0].samples, [(42, 2.5f64.to_bits(), 0)]);

    // 2.0: unknown fields around symbols, series, samples, and the former created_timestamp.
    let mut ts = Vec::new();
    ts.extend_from_slice(&[0x0a, 2, 1, 2]); // labels_refs packed
    put_len(&mut ts, 2, &with(smp));
    ts.extend_from_slice(&[0x30, 0x07]); // field 6 as a varint: the created timestamp
    let mut req = Vec::new();
    put_len(&mut req, 4, b"");
    put_len(&mut req, 4, b"__name__");
    put_len(&mut req, 5, &with(ts));
    put_len(&mut req, 4, b"up"); // symbols after the series that use them
    let got = ours(Version::V2, &with(req.clone())).unwrap();
    assert_eq!(got.series[0].labels, [("__name__".into(), "up".into())]);
    assert_eq!(got.series[0].created, 7);
    let mut want = prost_v2(&with(req)).unwrap().unwrap();
    want.series[0].created = 7;
    assert_eq!(got, want);
}

#[test]
fn unpacked_and_split_label_refs_read_as_one_list() {
    let mut ts = vec![0x08, 1, 0x08, 2]; // unpacked
    ts.extend_from_slice(&[0x0a, 1, 3, 0x0a, 1, 4]); // two packed runs
    let mut req = Vec::new();
    for s in ["", "a", "1", "b", "2"] {
        put_len(&mut req, 4, s.as_bytes());
    }
    put_len(&mut req, 5, &ts);
    let got = agree(Version::V2, &req).unwrap();
    assert_eq!(
        got.series[0].labels,
        [("a".into(), "1".into()), ("b".into(), "2".into())]
    );
}

#[test]
fn the_last_copy_of_a_singular_field_wins() {
    let mut lab = Vec::new();
    put_len(&mut lab, 1, b"first");
    put_len(&mut lab, 2, b"v");
    put_len(&mut lab, 1, b"second");
    let mut ts = Vec::new();
    put_len(&mut ts, 1, &lab);
    ts.extend_from_slice(&[0x12, 4, 0x10, 1, 0x10, 2]); // timestamp twice
    let mut req = Vec::new();
    put_len(&mut req, 1, &ts);
    let got = agree(Version::V1, &req).unwrap();
    assert_eq!(got.series[0].labels, [("second".into(), "v".into())]);
    assert_eq!(got.series[0].samples, [(2, 0, 0)]);
    // Every copy must be UTF-8, as prost checks each.
    let mut lab = Vec::new();
    put_len(&mut lab, 1, b"\xff");
    put_len(&mut lab, 1, b"ok");
    let mut ts = Vec::new();
    put_len(&mut ts, 1, &lab);
    let mut req = Vec::new();
    put_len(&mut req, 1, &ts);
    let e = agree(Version::V1, &req).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidUtf8 { .. }), "{e}");
}

#[test]
fn errors_name_the_field_and_offset() {
    // A name declaring 900 bytes with 2 left, in the second label of the fourth series.
    let mut req = Vec::new();
    for _ in 0..3 {
        put_len(&mut req, 1, &[]);
    }
    let mut ts = Vec::new();
    let mut lab = Vec::new();
    put_len(&mut lab, 1, b"a");
    put_len(&mut ts, 1, &lab);
    let bad = [0x0a, 0x84, 0x07, b'x', b'y'];
    put_len(&mut ts, 1, &bad);
    put_len(&mut req, 1, &ts);
    let e = agree(Version::V1, &req).unwrap_err();
    let at = req.len() - 4;
    assert_eq!(
        e,
        DecodeError::Protobuf {
            offset: at,
            what: "timeseries[3].labels[1].name: length 900 past the end of its message (2 bytes left)"
                .into()
        }
    );
    assert_eq!(e.status(), 400);

    let mut lab = Vec::new();
    put_len(&mut lab, 2, b"ok\xc3");
    let mut ts = Vec::new();
    put_len(&mut ts, 1, &lab);
    let mut req = Vec::new();
    put_len(&mut req, 1, &ts);
    let e = agree(Version::V1, &req).unwrap_err();
    assert_eq!(
        e,
        DecodeError::InvalidUtf8 {
            offset: 6,
            field: "timeseries[0].labels[0].value".into()
        }
    );

    // Wrong wire type for a known field.
    let e = agree(Version::V1, &[0x0a, 2, 0x08, 1]).unwrap_err();
    assert!(
        e.to_string()
            .contains("timeseries[0].labels: wire type 0, want 2"),
        "{e}"
    );
    // A group is refused even where unknown fields are skipped.
    let e = agree(Version::V1, &[0x0a, 2, 0x7b, 0x7c]).unwrap_err();
    assert!(e.to_string().contains("group"), "{e}");
}

#[test]
fn labels_anywhere_in_a_series_keep_their_order() {
    // Two labels, a sample, then two more labels (one long enough for a two-byte length):
    // the first run and the rest are read by different paths and must join in order.
    let mut ts = Vec::new();
    for (n, v) in [("a", "1"), ("b", "ü")] {
        put_len(&mut ts, 1, &label(n, v).encode_to_vec());
    }
    put_len(&mut ts, 2, &sample(5, 1.5).encode_to_vec());
    let long = "v".repeat(200);
    for (n, v) in [("c", long.as_str()), ("d", "4")] {
        put_len(&mut ts, 1, &label(n, v).encode_to_vec());
    }
    let mut req = Vec::new();
    put_len(&mut req, 1, &ts);
    let got = agree(Version::V1, &req).unwrap();
    let names: Vec<&str> = got.series[0].labels.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);

    // Invalid UTF-8 in a label of the usual shape is found and named.
    for bad in [1, 3] {
        let mut ts = Vec::new();
        for i in 0..4 {
            let v: &[u8] = if i == bad { b"x\xc3(" } else { b"ok" };
            let mut l = Vec::new();
            put_len(&mut l, 1, b"n");
            put_len(&mut l, 2, v);
            put_len(&mut ts, 1, &l);
        }
        let mut req = Vec::new();
        put_len(&mut req, 1, &ts);
        let e = agree(Version::V1, &req).unwrap_err();
        assert!(
            matches!(&e, DecodeError::InvalidUtf8 { field, .. } if *field == format!("timeseries[0].labels[{bad}].value")),
            "{e}"
        );
    }
}

#[test]
fn symbol_references_must_resolve() {
    let mut req = pb2::Request {
        symbols: vec!["".into(), "a".into(), "b".into()],
        timeseries: vec![pb2::TimeSeries {
            labels_refs: vec![1, 2, 1, 3],
            ..Default::default()
        }],
    };
    let e = agree(Version::V2, &req.encode_to_vec()).unwrap_err();
    assert!(
        matches!(&e, DecodeError::BadSymbolRef { field, reference: 3, symbols: 3, .. } if field == "timeseries[0].labels_refs[3]"),
        "{e}"
    );
    req.timeseries[0].labels_refs = vec![1, 2, 1];
    let e = agree(Version::V2, &req.encode_to_vec()).unwrap_err();
    assert!(
        matches!(e, DecodeError::OddLabelRefs { count: 3, .. }),
        "{e}"
    );
    req.timeseries[0].labels_refs = vec![1, 2];
    req.timeseries[0].metadata = Some(pb2::Metadata {
        r#type: 1,
        help_ref: 9,
        unit_ref: 0,
    });
    let e = agree(Version::V2, &req.encode_to_vec()).unwrap_err();
    assert!(
        e.to_string().contains("timeseries[0].metadata.help_ref"),
        "{e}"
    );
    req.timeseries[0].metadata = None;
    req.timeseries[0].exemplars = vec![pb2::Exemplar {
        labels_refs: vec![4, 1],
        ..Default::default()
    }];
    let e = agree(Version::V2, &req.encode_to_vec()).unwrap_err();
    assert!(e.to_string().contains("exemplars[0].labels_refs[0]"), "{e}");
    // Reference 0 is "" even with no symbols at all.
    let req = pb2::Request {
        symbols: vec![],
        timeseries: vec![pb2::TimeSeries {
            labels_refs: vec![0, 0],
            ..Default::default()
        }],
    };
    let got = agree(Version::V2, &req.encode_to_vec()).unwrap();
    assert_eq!(got.series[0].labels, [(String::new(), String::new())]);
    // A symbol that is not UTF-8.
    let mut req = Vec::new();
    put_len(&mut req, 4, b"");
    put_len(&mut req, 4, b"\xe2\x82");
    let e = agree(Version::V2, &req).unwrap_err();
    assert_eq!(
        e,
        DecodeError::InvalidUtf8 {
            offset: 4,
            field: "symbols[1]".into()
        }
    );
}

#[test]
fn every_truncation_is_an_error_or_a_shorter_request() {
    for (v, buf) in [
        (Version::V1, v1_request().encode_to_vec()),
        (Version::V2, v2_request().encode_to_vec()),
    ] {
        let whole = agree(v, &buf).unwrap();
        for cut in 0..buf.len() {
            // Cuts on a field boundary of the request give a valid shorter request; any other
            // is an error. Both must be what prost says.
            if let Ok(r) = agree(v, &buf[..cut]) {
                assert!(
                    r.series.len() < whole.series.len() || r.metadata.len() < whole.metadata.len(),
                    "cut {cut}"
                );
            }
        }
    }
}

#[test]
fn huge_lengths_and_varints_are_errors() {
    for bytes in [
        &[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ][..],
        &[
            0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ],
        &[0x0a, 0x80, 0x80, 0x80, 0x80, 0x10],
        &[0x0a, 5, 0x12, 0xff, 0xff, 0xff, 0x7f],
    ] {
        for v in [Version::V1, Version::V2] {
            let e = ours(v, bytes);
            if v == Version::V1 {
                assert!(matches!(e, Err(DecodeError::Protobuf { .. })), "{e:?}");
            }
            agree(v, bytes).ok();
        }
    }
}

#[test]
fn batches_are_reused_without_growing() {
    let a = v1_request().encode_to_vec();
    let mut batch = WriteBatch::new();
    decode(Version::V1, &a, &mut batch).unwrap();
    let caps = |b: &WriteBatch| {
        (
            b.labels.capacity(),
            b.series.capacity(),
            b.samples.capacity(),
        )
    };
    let before = caps(&batch);
    let mut batch = batch.recycle();
    let b = v1_request().encode_to_vec();
    decode(Version::V1, &b, &mut batch).unwrap();
    assert_eq!(caps(&batch), before);
    assert_eq!(batch.len(), 4);
    // A failed decode leaves nothing behind.
    assert!(decode(Version::V1, &[0x0a, 9], &mut batch).is_err());
    assert!(batch.is_empty() && batch.labels.is_empty() && batch.samples.is_empty());
}

#[test]
fn content_types() {
    let ok = |ct: Option<&str>| version_from_content_type(ct).unwrap();
    assert_eq!(ok(None), Version::V1);
    assert_eq!(ok(Some("")), Version::V1);
    assert_eq!(ok(Some("application/x-protobuf")), Version::V1);
    assert_eq!(
        ok(Some("application/x-protobuf;proto=prometheus.WriteRequest")),
        Version::V1
    );
    assert_eq!(
        ok(Some(
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
        )),
        Version::V2
    );
    assert_eq!(
        ok(Some(
            "Application/X-Protobuf ; Proto=\"io.prometheus.write.v2.Request\""
        )),
        Version::V2
    );
    assert_eq!(
        ok(Some("application/x-protobuf; charset=utf-8")),
        Version::V1
    );
    for bad in [
        "application/json",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        "application/x-protobuf;garbage",
        "text/plain;proto=prometheus.WriteRequest",
    ] {
        let e = version_from_content_type(Some(bad)).unwrap_err();
        assert_eq!(e.status(), 415, "{bad}");
    }
    let long = format!("application/{}", "x".repeat(100_000));
    let e = version_from_content_type(Some(&long)).unwrap_err();
    assert!(e.to_string().len() < 500);
    assert!(check_content_encoding(None).is_ok());
    assert!(check_content_encoding(Some("Snappy")).is_ok());
    assert_eq!(
        check_content_encoding(Some("gzip")).unwrap_err().status(),
        415
    );
    assert_eq!(
        DecodeError::TooLarge {
            limit: 1,
            declared: 2
        }
        .status(),
        413
    );
}

#[test]
fn written_headers() {
    let w = Written {
        samples: 2000,
        histograms: 0,
        exemplars: 3,
    };
    assert_eq!(
        w.headers(),
        [
            (
                "X-Prometheus-Remote-Write-Samples-Written",
                "2000".to_string()
            ),
            (
                "X-Prometheus-Remote-Write-Histograms-Written",
                "0".to_string()
            ),
            (
                "X-Prometheus-Remote-Write-Exemplars-Written",
                "3".to_string()
            ),
        ]
    );
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,12}",
        "\\PC{0,6}",
        Just(String::new()),
        "[a-z]{120,140}",
    ]
}

fn v1_strategy() -> impl Strategy<Value = pb1::WriteRequest> {
    let ts = (
        prop::collection::vec((text(), text()), 0..6),
        prop::collection::vec((any::<i64>(), any::<u64>()), 0..4),
        0..2usize,
        0..2usize,
    )
        .prop_map(|(labels, samples, h, e)| pb1::TimeSeries {
            labels: labels.into_iter().map(|(n, v)| label(&n, &v)).collect(),
            samples: samples
                .into_iter()
                .map(|(t, v)| sample(t, f64::from_bits(v)))
                .collect(),
            histograms: vec![histogram(); h],
            exemplars: vec![pb1::Exemplar::default(); e],
        });
    (
        prop::collection::vec(ts, 0..8),
        prop::collection::vec((0..9i32, text()), 0..3),
    )
        .prop_map(|(timeseries, md)| pb1::WriteRequest {
            timeseries,
            metadata: md
                .into_iter()
                .map(|(t, s)| pb1::MetricMetadata {
                    r#type: t,
                    metric_family_name: s.clone(),
                    help: s,
                    unit: String::new(),
                })
                .collect(),
        })
}

fn v2_strategy() -> impl Strategy<Value = pb2::Request> {
    (
        prop::collection::vec(text(), 1..12),
        prop::collection::vec(
            (
                prop::collection::vec(0..12u32, 0..8),
                prop::collection::vec(
                    (
                        any::<i64>(),
                        any::<u64>(),
                        prop_oneof![Just(0i64), any::<i64>()],
                    ),
                    0..4,
                ),
                prop::option::of((0..9i32, 0..12u32, 0..12u32)),
            ),
            0..8,
        ),
    )
        .prop_map(|(mut symbols, ts)| {
            symbols[0].clear();
            let n = symbols.len() as u32;
            pb2::Request {
                timeseries: ts
                    .into_iter()
                    .map(|(mut refs, samples, md)| {
                        refs.truncate(refs.len() / 2 * 2);
                        pb2::TimeSeries {
                            // Mostly in range; some references past the table on purpose.
                            labels_refs: refs
                                .into_iter()
                                .map(|r| if r < n + 1 { r % n } else { r })
                                .collect(),
                            samples: samples
                                .into_iter()
                                .map(|(t, v, st)| pb2::Sample {
                                    value: f64::from_bits(v),
                                    timestamp: t,
                                    start_timestamp: st,
                                })
                                .collect(),
                            metadata: md.map(|(t, h, u)| pb2::Metadata {
                                r#type: t,
                                help_ref: h % n,
                                unit_ref: u % n,
                            }),
                            ..Default::default()
                        }
                    })
                    .collect(),
                symbols,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn v1_requests_decode_as_prost_decodes_them(req in v1_strategy()) {
        let buf = req.encode_to_vec();
        let got = agree(Version::V1, &buf).unwrap();
        prop_assert_eq!(got.series.len(), req.timeseries.len());
    }

    #[test]
    fn v2_requests_decode_as_prost_decodes_them(req in v2_strategy()) {
        agree(Version::V2, &req.encode_to_vec()).ok();
    }

    #[test]
    fn damaged_requests_never_panic(req in v1_strategy(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = req.encode_to_vec();
        if !buf.is_empty() {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        agree(Version::V1, &buf).ok();
        agree(Version::V2, &buf).ok();
    }

    #[test]
    fn garbage_never_panics(buf in prop::collection::vec(any::<u8>(), 0..200)) {
        agree(Version::V1, &buf).ok();
        agree(Version::V2, &buf).ok();
        let mut out = Vec::new();
        if decompress(&buf, 1 << 16, &mut out).is_ok() {
            agree(Version::V1, &out).ok();
        }
    }
}

fn group(e: &DecodeError) -> bool {
    e.to_string().contains("group (wire type 3 or 4)")
}

fn reference(e: &DecodeError) -> bool {
    matches!(
        e,
        DecodeError::BadSymbolRef { .. } | DecodeError::OddLabelRefs { .. }
    )
}

/// A 2.0 body of one series whose label references are `n` one-byte references to symbol 1.
fn v2_refs_bomb(n: usize) -> Vec<u8> {
    let mut series = vec![0x0a];
    put_uvarint(&mut series, n as u64);
    series.extend(std::iter::repeat_n(1u8, n));
    let mut body = vec![0x22, 0x00, 0x22, 0x01, b'a', 0x2a];
    put_uvarint(&mut body, series.len() as u64);
    body.extend(series);
    body
}

/// A 1.0 body of one series holding one native histogram whose packed positive bucket deltas
/// are `n` one-byte varints (eight bytes each in memory).
fn v1_buckets_bomb(n: usize) -> Vec<u8> {
    let mut deltas = vec![0x62];
    put_uvarint(&mut deltas, n as u64);
    deltas.extend(std::iter::repeat_n(0u8, n));
    let mut histogram = vec![0x22];
    put_uvarint(&mut histogram, deltas.len() as u64);
    histogram.extend(deltas);
    let mut body = vec![0x0a];
    put_uvarint(&mut body, histogram.len() as u64);
    body.extend(histogram);
    body
}

/// A 1.0 body of one series wrapping `n` bytes of `unit` repeated (empty labels, samples).
fn v1_one_series_of(unit: &[u8], n: usize) -> Vec<u8> {
    let inner = unit.repeat(n / unit.len());
    let mut body = vec![0x0a];
    put_uvarint(&mut body, inner.len() as u64);
    body.extend(inner);
    body
}

#[test]
fn bodies_of_empty_messages_are_refused_before_they_take_memory() {
    // 200k empty series: 400 KB of body that would be 11 MB of series entries.
    let bomb: Vec<u8> = [0x0a, 0x00].repeat(200_000);
    let mut batch = WriteBatch::new();
    let e = decode(Version::V1, &bomb, &mut batch).unwrap_err();
    let limit = DecodeLimits::for_body(Version::V1, bomb.len()).entry_bytes;
    assert_eq!(
        e,
        DecodeError::Dense {
            body: 400_000,
            limit
        }
    );
    assert_eq!(e.status(), 413);
    assert!(e.to_string().contains("400000 decompressed bytes"), "{e}");
    // Refused as its vectors grew past the limit (12 bytes per body byte and 64 KiB), every
    // allocation they made counted: not after.
    assert!(batch.held_bytes() <= limit, "{}", batch.held_bytes());
    // Past 1 MiB a body's entries are counted first: refused before any is allocated.
    let bomb: Vec<u8> = [0x0a, 0x00].repeat(2_000_000);
    let mut batch = WriteBatch::new();
    let e = decode(Version::V1, &bomb, &mut batch).unwrap_err();
    assert!(matches!(e, DecodeError::Dense { .. }), "{e}");
    assert_eq!(batch.held_bytes(), 0);

    // Every shape of bomb, in both versions, stays within its limit while it is decoded; those
    // that would pass it are refused (from the count of their entries, before those are
    // allocated; a histogram's buckets from the length of their packed run). Empty samples
    // and one-byte bucket deltas take 8 bytes per body byte, within 1.0's 12, empty 2.0
    // symbols 12 and one-byte label references 16, within 2.0's 32: at this size they are
    // taken.
    let bombs = [
        (
            Version::V1,
            "empty labels",
            v1_one_series_of(&[0x0a, 0x00], 1 << 20),
            true,
        ),
        (
            Version::V1,
            "empty samples",
            v1_one_series_of(&[0x12, 0x00], 1 << 20),
            false,
        ),
        (
            Version::V1,
            "empty histograms",
            v1_one_series_of(&[0x22, 0x00], 1 << 20),
            true,
        ),
        (
            Version::V1,
            "bucket deltas",
            v1_buckets_bomb(1 << 20),
            false,
        ),
        (
            Version::V1,
            "bucket deltas past 32 MiB",
            v1_buckets_bomb(5 << 20),
            true,
        ),
        (Version::V1, "metadata", [0x1a, 0x00].repeat(500_000), true),
        (
            Version::V2,
            "label references",
            v2_refs_bomb(1 << 20),
            false,
        ),
        (
            Version::V2,
            "label references past 32 MiB",
            v2_refs_bomb(3 << 20),
            true,
        ),
        (
            Version::V2,
            "empty series",
            [0x2a, 0x00].repeat(500_000),
            true,
        ),
        (
            Version::V2,
            "empty symbols",
            [0x22, 0x00].repeat(1_000_000),
            false,
        ),
    ];
    for (version, what, bomb, refused) in bombs {
        let mut batch = WriteBatch::new();
        let limits = DecodeLimits::for_body(version, bomb.len());
        let r = decode(version, &bomb, &mut batch);
        match r {
            Err(DecodeError::Dense { .. }) => assert!(refused, "{what}: refused"),
            Ok(()) => assert!(!refused, "{what}: taken"),
            Err(e) => panic!("{what}: {e}"),
        }
        assert!(
            batch.held_bytes() <= limits.entry_bytes,
            "{what}: {} bytes held, limit {}",
            batch.held_bytes(),
            limits.entry_bytes
        );
    }
}

#[test]
fn limits_known_before_decoding_refuse_as_soon_as_passed() {
    let body = pb1::WriteRequest {
        timeseries: (0..1000)
            .map(|i| pb1::TimeSeries {
                labels: vec![label("__name__", "a"), label("i", &i.to_string())],
                samples: vec![sample(i, 1.0), sample(i + 1, 2.0)],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec();
    let roomy = DecodeLimits::for_body(Version::V1, body.len());
    let mut batch = WriteBatch::new();
    decode_limited(Version::V1, &body, &roomy, &mut batch).unwrap();
    assert_eq!((batch.len(), batch.samples.len()), (1000, 2000));
    // Series and samples: refused at the first series past the limit, 413.
    for (limits, want) in [
        (
            DecodeLimits {
                series: 999,
                ..roomy
            },
            DecodeError::TooMany {
                what: "series",
                limit: 999,
            },
        ),
        (
            DecodeLimits {
                samples: 1000,
                ..roomy
            },
            DecodeError::TooMany {
                what: "samples",
                limit: 1000,
            },
        ),
    ] {
        let mut batch = WriteBatch::new();
        let e = decode_limited(Version::V1, &body, &limits, &mut batch).unwrap_err();
        assert_eq!(e, want);
        assert_eq!(e.status(), 413);
        assert!(batch.is_empty());
    }
    // Entry bytes: a limit under what the request needs refuses it with the vectors held
    // within the limit; what a reused batch already holds counts.
    let tight = DecodeLimits {
        entry_bytes: 64 << 10,
        ..roomy
    };
    let mut batch = WriteBatch::new();
    let e = decode_limited(Version::V1, &body, &tight, &mut batch).unwrap_err();
    assert!(
        matches!(e, DecodeError::Dense { limit, .. } if limit == 64 << 10),
        "{e}"
    );
    assert!(batch.held_bytes() <= 64 << 10, "{}", batch.held_bytes());
    let mut batch = WriteBatch::new();
    decode_limited(Version::V1, &body, &roomy, &mut batch).unwrap();
    let held = batch.held_bytes();
    let just = DecodeLimits {
        entry_bytes: held,
        ..roomy
    };
    decode_limited(Version::V1, &body, &just, &mut batch).unwrap();
    assert_eq!(batch.held_bytes(), held);
    let under = DecodeLimits {
        entry_bytes: held / 2,
        ..roomy
    };
    let mut fresh = WriteBatch::new();
    assert!(decode_limited(Version::V1, &body, &under, &mut fresh).is_err());
}

#[test]
fn the_entry_limit_is_capped_whatever_the_body() {
    assert_eq!(
        DecodeLimits::for_body(Version::V1, 1000).entry_bytes,
        12_000 + (64 << 10)
    );
    assert_eq!(
        DecodeLimits::for_body(Version::V2, 1000).entry_bytes,
        32_000 + (64 << 10)
    );
    for v in [Version::V1, Version::V2] {
        assert_eq!(
            DecodeLimits::for_body(v, 16 << 20).entry_bytes,
            MAX_ENTRY_BYTES
        );
        assert_eq!(
            DecodeLimits::for_body(v, usize::MAX).entry_bytes,
            MAX_ENTRY_BYTES
        );
    }
}

#[test]
fn dense_real_requests_are_taken() {
    // 1.0: 50k series of one-letter labels, one sample each.
    let v1 = pb1::WriteRequest {
        timeseries: (0..50_000)
            .map(|i| pb1::TimeSeries {
                labels: vec![label("__name__", "a"), label("b", "c"), label("d", "e")],
                samples: vec![sample(i, 1.0)],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let got = agree(Version::V1, &v1.encode_to_vec()).unwrap();
    assert_eq!(got.series.len(), 50_000);
    // 2.0: 50k series of ten labels each, every reference one byte.
    let v2 = pb2::Request {
        symbols: (0..21).map(|i| format!("s{i:02}")).collect(),
        timeseries: (0..50_000)
            .map(|i| pb2::TimeSeries {
                labels_refs: (1..=20).collect(),
                samples: vec![pb2::Sample {
                    value: 1.0,
                    timestamp: i,
                    start_timestamp: 0,
                }],
                ..Default::default()
            })
            .collect(),
    };
    let got = agree(Version::V2, &v2.encode_to_vec()).unwrap();
    assert_eq!(got.series.len(), 50_000);
}

#[test]
fn histograms_decode_into_the_model() {
    let mut float = histogram();
    float.count = Some(pb1::histogram::Count::CountFloat(4.5));
    float.schema = -53;
    float.zero_count = None;
    float.zero_threshold = 0.0;
    float.negative_spans.clear();
    float.negative_deltas.clear();
    float.positive_spans = vec![pb1::BucketSpan {
        offset: 0,
        length: 2,
    }];
    let req = pb1::WriteRequest {
        timeseries: vec![pb1::TimeSeries {
            labels: vec![label("__name__", "h")],
            histograms: vec![histogram(), float],
            ..Default::default()
        }],
        ..Default::default()
    };
    let buf = req.encode_to_vec();
    let mut b = WriteBatch::new();
    decode(Version::V1, &buf, &mut b).unwrap();
    let hs = b.series_histograms(0);
    assert_eq!(hs.len(), 2);
    let HistogramValue::Int(h) = &hs[0].h else {
        panic!("count_int makes an integer histogram: {:?}", hs[0].h);
    };
    assert_eq!((h.count, h.schema, h.zero_count), (12, -2, 0));
    assert_eq!(h.negative_spans, [crate::histogram::Span::new(-3, 2)]);
    assert_eq!(h.negative_buckets, [1, -1]);
    assert_eq!(
        h.counter_reset_hint,
        crate::histogram::CounterResetHint::NotCounterReset
    );
    // Custom bounds belong to schema -53 only.
    assert!(h.custom_values.is_empty());
    assert_eq!(hs[0].t, 1_700_000_000_000);
    let HistogramValue::Float(f) = &hs[1].h else {
        panic!("count_float makes a float histogram: {:?}", hs[1].h);
    };
    assert_eq!((f.count, f.zero_count), (4.5, 0.0));
    assert_eq!(f.positive_buckets, [0.5, 2.0]);
    assert_eq!(&*f.custom_values, &[1.0, 2.0, 4.0]);
    assert!(hs[1].validate().is_ok(), "{:?}", hs[1].validate());
    // The integer one claims 12 observations its buckets do not hold.
    assert!(hs[0].validate().is_err());
}
