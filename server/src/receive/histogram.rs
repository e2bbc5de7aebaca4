//! Native histograms as receivers pass them to each other: the `prometheus.Histogram` message
//! of a forwarded `thanos.WriteRequest` to and from the histogram model. Reading follows the
//! remote-write decoder (`gauntlet_engine::remote_write`): a histogram whose count is
//! `count_float` is a float histogram, any other an integer one; the zero count comes from the
//! field of the same kind (a mismatched one is 0); custom bounds are kept only for the
//! custom-buckets schema; an unknown reset hint is "unknown". Writing gives a Thanos receiver
//! the same message Prometheus would have sent.

use gauntlet_engine::histogram::{
    CounterResetHint, CustomBounds, FloatHistogram, Histogram, Span, is_custom_buckets_schema,
};
use gauntlet_engine::remote_write::{HistogramSample, HistogramValue};
use gauntlet_proto::prometheus as pb;
use pb::histogram::{Count, ZeroCount};

/// The histogram sample `h` carries.
pub fn from_proto(h: &pb::Histogram) -> HistogramSample {
    let hint = u8::try_from(h.reset_hint as u32)
        .ok()
        .and_then(CounterResetHint::from_u8)
        .unwrap_or_default();
    let custom_values: CustomBounds = if is_custom_buckets_schema(h.schema) {
        h.custom_values.as_slice().into()
    } else {
        CustomBounds::default()
    };
    let spans = |s: &[pb::BucketSpan]| -> Vec<Span> {
        s.iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let value = match h.count {
        Some(Count::CountFloat(count)) => HistogramValue::Float(FloatHistogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: match h.zero_count {
                Some(ZeroCount::ZeroCountFloat(z)) => z,
                _ => 0.0,
            },
            count,
            sum: h.sum,
            positive_spans: spans(&h.positive_spans),
            negative_spans: spans(&h.negative_spans),
            positive_buckets: h.positive_counts.clone(),
            negative_buckets: h.negative_counts.clone(),
            custom_values,
        }),
        Some(Count::CountInt(_)) | None => HistogramValue::Int(Histogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: match h.zero_count {
                Some(ZeroCount::ZeroCountInt(z)) => z,
                _ => 0,
            },
            count: match h.count {
                Some(Count::CountInt(n)) => n,
                _ => 0,
            },
            sum: h.sum,
            positive_spans: spans(&h.positive_spans),
            negative_spans: spans(&h.negative_spans),
            positive_buckets: h.positive_deltas.clone(),
            negative_buckets: h.negative_deltas.clone(),
            custom_values,
        }),
    };
    HistogramSample {
        t: h.timestamp,
        h: value,
    }
}

/// The message that carries `s`.
pub fn to_proto(s: &HistogramSample) -> pb::Histogram {
    let spans = |s: &[Span]| -> Vec<pb::BucketSpan> {
        s.iter()
            .map(|s| pb::BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    match &s.h {
        HistogramValue::Int(h) => pb::Histogram {
            count: Some(Count::CountInt(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(ZeroCount::ZeroCountInt(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_deltas: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_deltas: h.positive_buckets.clone(),
            reset_hint: h.counter_reset_hint as i32,
            timestamp: s.t,
            custom_values: h.custom_values.to_vec(),
            ..Default::default()
        },
        HistogramValue::Float(h) => pb::Histogram {
            count: Some(Count::CountFloat(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_counts: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_counts: h.positive_buckets.clone(),
            reset_hint: h.counter_reset_hint as i32,
            timestamp: s.t,
            custom_values: h.custom_values.to_vec(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use gauntlet_engine::remote_write::{Version, WriteBatch, decode};
    use prost::Message as _;

    fn int_sample() -> HistogramSample {
        HistogramSample {
            t: 1_700_000_000_123,
            h: HistogramValue::Int(Histogram {
                counter_reset_hint: CounterResetHint::NotCounterReset,
                schema: 3,
                zero_threshold: 0.001,
                zero_count: 2,
                count: 14,
                sum: -3.25,
                positive_spans: vec![
                    Span {
                        offset: -2,
                        length: 2,
                    },
                    Span {
                        offset: 3,
                        length: 1,
                    },
                ],
                negative_spans: vec![Span {
                    offset: 1,
                    length: 2,
                }],
                positive_buckets: vec![1, 4, -2],
                negative_buckets: vec![3, -2],
                custom_values: Default::default(),
            }),
        }
    }

    fn float_sample() -> HistogramSample {
        HistogramSample {
            t: -5,
            h: HistogramValue::Float(FloatHistogram {
                counter_reset_hint: CounterResetHint::Gauge,
                schema: -53,
                zero_threshold: 0.0,
                zero_count: 0.0,
                count: 4.5,
                sum: f64::from_bits(0x7ff0_0000_0000_0002),
                positive_spans: vec![Span {
                    offset: 0,
                    length: 3,
                }],
                negative_spans: Vec::new(),
                positive_buckets: vec![1.5, 0.0, 3.0],
                negative_buckets: Vec::new(),
                custom_values: [0.1, 1.0].into(),
            }),
        }
    }

    #[test]
    fn samples_go_through_the_message_unchanged() {
        for s in [int_sample(), float_sample()] {
            let back = from_proto(&to_proto(&s));
            assert_eq!(back.t, s.t);
            match (&back.h, &s.h) {
                (HistogramValue::Float(a), HistogramValue::Float(b)) => assert!(a.identical(b)),
                (HistogramValue::Int(a), HistogramValue::Int(b)) => assert!(a.identical(b)),
                _ => panic!("kind changed: {back:?}"),
            }
        }
    }

    #[test]
    fn messages_read_as_the_remote_write_decoder_reads_them() {
        // Mismatched zero counts, no count at all, custom bounds on an exponential schema and
        // an unknown hint: each read as the request decoder reads the same bytes.
        let mut odd = to_proto(&int_sample());
        odd.zero_count = Some(ZeroCount::ZeroCountFloat(2.0));
        odd.custom_values = vec![1.0, 2.0];
        odd.reset_hint = 9;
        let mut none = odd.clone();
        none.count = None;
        let mut float = to_proto(&float_sample());
        float.zero_count = Some(ZeroCount::ZeroCountInt(4));
        for h in [odd, none, float] {
            let body = pb::WriteRequest {
                timeseries: vec![pb::TimeSeries {
                    labels: vec![pb::Label {
                        name: "__name__".into(),
                        value: "h".into(),
                    }],
                    histograms: vec![h.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            }
            .encode_to_vec();
            let mut wb = WriteBatch::new();
            decode(Version::V1, &body, &mut wb).unwrap();
            let want = &wb.histogram_samples[0];
            let got = from_proto(&h);
            assert_eq!(got.t, want.t);
            match (&got.h, &want.h) {
                (HistogramValue::Float(a), HistogramValue::Float(b)) => {
                    assert!(a.identical(b), "{a:?} != {b:?}")
                }
                (HistogramValue::Int(a), HistogramValue::Int(b)) => {
                    assert!(a.identical(b), "{a:?} != {b:?}")
                }
                _ => panic!("kinds differ: {got:?} vs {want:?}"),
            }
        }
    }
}
