//! Native histogram sample records (`tsdb/record`, types 7 to 10), as Prometheus 3 writes
//! them: integer histograms in type 7 and float histograms in type 8, or 9 and 10 when they use
//! custom buckets (schema -53), which a record of type 7 or 8 never holds. After the type byte,
//! the first sample's ref and timestamp (8 bytes big-endian each), then per sample the ref and
//! timestamp as zig-zag varint deltas from those and the histogram:
//!
//! | field | integer histogram | float histogram |
//! |---|---|---|
//! | counter reset hint | 1 byte | 1 byte |
//! | schema | zig-zag varint | zig-zag varint |
//! | zero threshold | 8 bytes BE (float bits) | same |
//! | zero count, count | uvarint each | 8 bytes BE float each |
//! | sum | 8 bytes BE float | same |
//! | positive spans, negative spans | uvarint n, then n × (zig-zag offset, uvarint length) | same |
//! | positive buckets, negative buckets | uvarint n, then n zig-zag deltas | uvarint n, then n 8-byte floats |
//! | custom values (schema -53 only) | uvarint n, then n 8-byte floats | same |
//!
//! Samples of a schema Prometheus does not know are skipped by its reader, and by this one.

use super::record::{RecordError, RecordType};
use crate::encoding::{Decbuf, DecodeError, put_uvarint, zigzag_encode};
use crate::histogram::{
    CounterResetHint, CustomBounds, FloatHistogram, Histogram, Span, is_custom_buckets_schema,
    is_known_schema,
};

/// One integer histogram sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct RefHistogramSample {
    /// The series ref.
    pub r: u64,
    /// Timestamp, ms.
    pub t: i64,
    /// The histogram.
    pub h: Histogram,
}

/// One float histogram sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct RefFloatHistogramSample {
    /// The series ref.
    pub r: u64,
    /// Timestamp, ms.
    pub t: i64,
    /// The histogram.
    pub h: FloatHistogram,
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag_encode(v));
}

fn put_spans(out: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, i64::from(s.offset));
        put_uvarint(out, u64::from(s.length));
    }
}

/// Appends the records for `samples`' integer histograms: one of type 7 with the exponential
/// ones, then one of type 9 with the custom-bucket ones, each only when it holds a sample.
/// Returns the end of each record written in `out`.
pub fn encode_histogram_samples(out: &mut Vec<u8>, samples: &[RefHistogramSample]) -> Vec<usize> {
    let mut ends = Vec::with_capacity(2);
    for custom in [false, true] {
        let typ = if custom {
            RecordType::CustomBucketsHistogramSamples
        } else {
            RecordType::HistogramSamples
        };
        let mut kept = samples
            .iter()
            .filter(|s| s.h.uses_custom_buckets() == custom)
            .peekable();
        let Some(first) = kept.peek() else { continue };
        let (r0, t0) = (first.r, first.t);
        out.push(typ as u8);
        out.extend_from_slice(&r0.to_be_bytes());
        out.extend_from_slice(&t0.to_be_bytes());
        for s in kept {
            put_varint(out, (s.r as i64).wrapping_sub(r0 as i64));
            put_varint(out, s.t.wrapping_sub(t0));
            let h = &s.h;
            out.push(h.counter_reset_hint as u8);
            put_varint(out, i64::from(h.schema));
            put_f64(out, h.zero_threshold);
            put_uvarint(out, h.zero_count);
            put_uvarint(out, h.count);
            put_f64(out, h.sum);
            put_spans(out, &h.positive_spans);
            put_spans(out, &h.negative_spans);
            put_uvarint(out, h.positive_buckets.len() as u64);
            for &b in &h.positive_buckets {
                put_varint(out, b);
            }
            put_uvarint(out, h.negative_buckets.len() as u64);
            for &b in &h.negative_buckets {
                put_varint(out, b);
            }
            if is_custom_buckets_schema(h.schema) {
                put_uvarint(out, h.custom_values.len() as u64);
                for &v in h.custom_values.iter() {
                    put_f64(out, v);
                }
            }
        }
        ends.push(out.len());
    }
    ends
}

/// Appends the records for `samples`' float histograms: type 8 for the exponential ones, type
/// 10 for the custom-bucket ones, each only when it holds a sample. Returns each record's end.
pub fn encode_float_histogram_samples(
    out: &mut Vec<u8>,
    samples: &[RefFloatHistogramSample],
) -> Vec<usize> {
    let mut ends = Vec::with_capacity(2);
    for custom in [false, true] {
        let typ = if custom {
            RecordType::CustomBucketsFloatHistogramSamples
        } else {
            RecordType::FloatHistogramSamples
        };
        let mut kept = samples
            .iter()
            .filter(|s| s.h.uses_custom_buckets() == custom)
            .peekable();
        let Some(first) = kept.peek() else { continue };
        let (r0, t0) = (first.r, first.t);
        out.push(typ as u8);
        out.extend_from_slice(&r0.to_be_bytes());
        out.extend_from_slice(&t0.to_be_bytes());
        for s in kept {
            put_varint(out, (s.r as i64).wrapping_sub(r0 as i64));
            put_varint(out, s.t.wrapping_sub(t0));
            let h = &s.h;
            out.push(h.counter_reset_hint as u8);
            put_varint(out, i64::from(h.schema));
            put_f64(out, h.zero_threshold);
            put_f64(out, h.zero_count);
            put_f64(out, h.count);
            put_f64(out, h.sum);
            put_spans(out, &h.positive_spans);
            put_spans(out, &h.negative_spans);
            put_uvarint(out, h.positive_buckets.len() as u64);
            for &b in &h.positive_buckets {
                put_f64(out, b);
            }
            put_uvarint(out, h.negative_buckets.len() as u64);
            for &b in &h.negative_buckets {
                put_f64(out, b);
            }
            if is_custom_buckets_schema(h.schema) {
                put_uvarint(out, h.custom_values.len() as u64);
                for &v in h.custom_values.iter() {
                    put_f64(out, v);
                }
            }
        }
        ends.push(out.len());
    }
    ends
}

/// The body of a record of type `a` or `b`.
fn body(rec: &[u8], a: RecordType, b: RecordType) -> Result<(RecordType, Decbuf<'_>), RecordError> {
    let &first = rec.first().ok_or(RecordError::Empty)?;
    if first == a as u8 || first == b as u8 {
        let t = if first == a as u8 { a } else { b };
        Ok((t, Decbuf::new(&rec[1..], 1)))
    } else {
        Err(RecordError::WrongType {
            expected: a,
            actual: first,
        })
    }
}

fn f64_be(d: &mut Decbuf<'_>) -> Result<f64, DecodeError> {
    Ok(f64::from_bits(d.be64()?))
}

/// A count read from the record, bounded by the bytes left (each element takes one at least),
/// so a hostile count cannot make a huge allocation.
fn len(d: &mut Decbuf<'_>) -> Result<usize, DecodeError> {
    let n = d.uvarint()?;
    Ok(n.min(d.remaining() as u64) as usize)
}

fn spans(d: &mut Decbuf<'_>) -> Result<Vec<Span>, DecodeError> {
    let n = len(d)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = d.varint()? as i32;
        let length = d.uvarint32()?;
        out.push(Span { offset, length });
    }
    Ok(out)
}

fn custom_values(d: &mut Decbuf<'_>, schema: i32) -> Result<CustomBounds, DecodeError> {
    if !is_custom_buckets_schema(schema) {
        return Ok(CustomBounds::default());
    }
    let n = len(d)?;
    let bounds: Vec<f64> = (0..n).map(|_| f64_be(d)).collect::<Result<_, _>>()?;
    Ok(bounds.into())
}

/// The common head of every sample: ref and time deltas, hint and schema.
fn sample_head(
    d: &mut Decbuf<'_>,
    r0: u64,
    t0: i64,
) -> Result<(u64, i64, CounterResetHint, i32), DecodeError> {
    let r = (r0 as i64).wrapping_add(d.varint()?) as u64;
    let t = t0.wrapping_add(d.varint()?);
    let hint = CounterResetHint::from_u8(d.u8()?).unwrap_or_default();
    let schema = d.varint()? as i32;
    Ok((r, t, hint, schema))
}

/// Appends the samples of a record of type 7 or 9 to `out`; samples of an unknown schema are
/// skipped. Returns how many were skipped.
pub fn decode_histogram_samples_into(
    rec: &[u8],
    out: &mut Vec<RefHistogramSample>,
) -> Result<usize, RecordError> {
    let (typ, mut d) = body(
        rec,
        RecordType::HistogramSamples,
        RecordType::CustomBucketsHistogramSamples,
    )?;
    let malformed = |source| RecordError::Malformed {
        record: typ,
        source,
    };
    let mut skipped = 0;
    if d.remaining() == 0 {
        return Ok(0);
    }
    let r0 = d.be64().map_err(malformed)?;
    let t0 = d.be64().map_err(malformed)? as i64;
    let mut one = |d: &mut Decbuf<'_>| -> Result<(), DecodeError> {
        let (r, t, counter_reset_hint, schema) = sample_head(d, r0, t0)?;
        let zero_threshold = f64_be(d)?;
        let zero_count = d.uvarint()?;
        let count = d.uvarint()?;
        let sum = f64_be(d)?;
        let positive_spans = spans(d)?;
        let negative_spans = spans(d)?;
        let n = len(d)?;
        let positive_buckets = (0..n).map(|_| d.varint()).collect::<Result<_, _>>()?;
        let n = len(d)?;
        let negative_buckets = (0..n).map(|_| d.varint()).collect::<Result<_, _>>()?;
        let custom_values = custom_values(d, schema)?;
        if !is_known_schema(schema) {
            skipped += 1;
            return Ok(());
        }
        out.push(RefHistogramSample {
            r,
            t,
            h: Histogram {
                counter_reset_hint,
                schema,
                zero_threshold,
                zero_count,
                count,
                sum,
                positive_spans,
                negative_spans,
                positive_buckets,
                negative_buckets,
                custom_values,
            },
        });
        Ok(())
    };
    while d.remaining() > 0 {
        one(&mut d).map_err(malformed)?;
    }
    Ok(skipped)
}

/// Appends the samples of a record of type 8 or 10 to `out`; samples of an unknown schema are
/// skipped. Returns how many were skipped.
pub fn decode_float_histogram_samples_into(
    rec: &[u8],
    out: &mut Vec<RefFloatHistogramSample>,
) -> Result<usize, RecordError> {
    let (typ, mut d) = body(
        rec,
        RecordType::FloatHistogramSamples,
        RecordType::CustomBucketsFloatHistogramSamples,
    )?;
    let malformed = |source| RecordError::Malformed {
        record: typ,
        source,
    };
    let mut skipped = 0;
    if d.remaining() == 0 {
        return Ok(0);
    }
    let r0 = d.be64().map_err(malformed)?;
    let t0 = d.be64().map_err(malformed)? as i64;
    let mut one = |d: &mut Decbuf<'_>| -> Result<(), DecodeError> {
        let (r, t, counter_reset_hint, schema) = sample_head(d, r0, t0)?;
        let zero_threshold = f64_be(d)?;
        let zero_count = f64_be(d)?;
        let count = f64_be(d)?;
        let sum = f64_be(d)?;
        let positive_spans = spans(d)?;
        let negative_spans = spans(d)?;
        let n = len(d)?;
        let positive_buckets = (0..n).map(|_| f64_be(d)).collect::<Result<_, _>>()?;
        let n = len(d)?;
        let negative_buckets = (0..n).map(|_| f64_be(d)).collect::<Result<_, _>>()?;
        let custom_values = custom_values(d, schema)?;
        if !is_known_schema(schema) {
            skipped += 1;
            return Ok(());
        }
        out.push(RefFloatHistogramSample {
            r,
            t,
            h: FloatHistogram {
                counter_reset_hint,
                schema,
                zero_threshold,
                zero_count,
                count,
                sum,
                positive_spans,
                negative_spans,
                positive_buckets,
                negative_buckets,
                custom_values,
            },
        });
        Ok(())
    };
    while d.remaining() > 0 {
        one(&mut d).map_err(malformed)?;
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(schema: i32, custom: &[f64]) -> Histogram {
        Histogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            schema,
            zero_threshold: if custom.is_empty() { 0.001 } else { 0.0 },
            zero_count: if custom.is_empty() { 2 } else { 0 },
            count: if custom.is_empty() { 9 } else { 7 },
            sum: 12.5,
            positive_spans: vec![Span::new(-1, 2), Span::new(3, 1)],
            negative_spans: if custom.is_empty() {
                vec![Span::new(0, 1)]
            } else {
                vec![]
            },
            positive_buckets: vec![3, -1, 2],
            negative_buckets: if custom.is_empty() { vec![1] } else { vec![] },
            custom_values: custom.into(),
        }
    }

    /// The bytes of one integer sample, field by field as the table above lays them out.
    #[test]
    fn integer_layout_is_prometheus() {
        let h = int(3, &[]);
        let mut out = Vec::new();
        let ends = encode_histogram_samples(&mut out, &[RefHistogramSample { r: 5, t: 1000, h }]);
        assert_eq!(ends, [out.len()]);
        let mut want = vec![7];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 2, 6]);
        want.extend_from_slice(&0.001f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[2, 9]);
        want.extend_from_slice(&12.5f64.to_bits().to_be_bytes());
        // Spans (-1,2), (3,1); (0,1); buckets 3,-1,2; 1 as zig-zag varints.
        want.extend_from_slice(&[2, 1, 2, 6, 1, 1, 0, 1, 3, 6, 1, 4, 1, 2]);
        assert_eq!(out, want);
    }

    #[test]
    fn custom_buckets_go_to_their_own_records_and_round_trip() {
        let samples = vec![
            RefHistogramSample {
                r: 3,
                t: 10,
                h: int(0, &[]),
            },
            RefHistogramSample {
                r: 4,
                t: 20,
                h: int(-53, &[0.5, 1.0, 2.0, 5.0, 10.0]),
            },
            RefHistogramSample {
                r: 2,
                t: 5,
                h: int(-4, &[]),
            },
        ];
        let mut out = Vec::new();
        let ends = encode_histogram_samples(&mut out, &samples);
        assert_eq!(ends.len(), 2);
        assert_eq!(out[0], 7);
        assert_eq!(out[ends[0]], 9);
        let mut got = Vec::new();
        decode_histogram_samples_into(&out[..ends[0]], &mut got).unwrap();
        decode_histogram_samples_into(&out[ends[0]..], &mut got).unwrap();
        assert_eq!(
            got,
            vec![samples[0].clone(), samples[2].clone(), samples[1].clone()]
        );

        let floats: Vec<RefFloatHistogramSample> = samples
            .iter()
            .map(|s| RefFloatHistogramSample {
                r: s.r,
                t: s.t,
                h: s.h.to_float(),
            })
            .collect();
        let mut out = Vec::new();
        let ends = encode_float_histogram_samples(&mut out, &floats);
        assert_eq!((out[0], out[ends[0]]), (8, 10));
        let mut got = Vec::new();
        decode_float_histogram_samples_into(&out[..ends[0]], &mut got).unwrap();
        decode_float_histogram_samples_into(&out[ends[0]..], &mut got).unwrap();
        assert_eq!(
            got,
            vec![floats[0].clone(), floats[2].clone(), floats[1].clone()]
        );
    }

    #[test]
    fn unknown_schemas_are_skipped_and_garbage_fails_cleanly() {
        let mut out = Vec::new();
        let mut h = int(0, &[]);
        h.schema = 20;
        encode_histogram_samples(&mut out, &[RefHistogramSample { r: 1, t: 1, h }]);
        let mut got = Vec::new();
        assert_eq!(decode_histogram_samples_into(&out, &mut got), Ok(1));
        assert!(got.is_empty());
        for cut in 1..out.len() {
            let _ = decode_histogram_samples_into(&out[..cut], &mut got);
            let _ = decode_float_histogram_samples_into(&out[..cut], &mut Vec::new());
        }
        assert!(matches!(
            decode_histogram_samples_into(&[7, 1, 2], &mut got),
            Err(RecordError::Malformed { .. })
        ));
        assert!(matches!(
            decode_histogram_samples_into(&[2], &mut got),
            Err(RecordError::WrongType { .. })
        ));
    }
}
