//! Corrupt histogram payloads: every decoder returns a typed error (never panics), and nothing
//! is allocated for counts the payload's bits cannot hold.

use proptest::prelude::*;

use super::histogram_fixtures::fixture_payloads;
use crate::chunk::bstream::BitWriter;
use crate::chunk::histogram_layout::{put_custom_bound, put_zero_threshold};
use crate::chunk::varbit::{put_varbit_int, put_varbit_uint};
use crate::chunk::{
    ChunkError, Encoding, FloatHistogramAppender, FloatHistogramIterator, HistogramAppender,
    HistogramIterator, decode_float_histogram_chunk, decode_histogram_chunk,
};
use crate::histogram::{Histogram, HistogramError, Span};

/// Decodes `data` as `encoding` with the iterator to the end, and also resumes an appender
/// from it; both must agree.
fn decode_any(encoding: Encoding, data: &[u8]) -> Result<usize, ChunkError> {
    if encoding == Encoding::Histogram {
        let n = decode_histogram_chunk(data).map(|s| s.len());
        let resumed = HistogramAppender::from_payload(data).map(|a| a.num_samples());
        assert_eq!(n, resumed);
        n
    } else {
        let n = decode_float_histogram_chunk(data).map(|s| s.len());
        let resumed = FloatHistogramAppender::from_payload(data).map(|a| a.num_samples());
        assert_eq!(n, resumed);
        n
    }
}

/// A payload announcing `num` samples, its bit stream written by `body`.
fn payload(num: u16, body: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
    let [a, b] = num.to_be_bytes();
    let mut w = BitWriter::with_prefix_packed(vec![a, b, 0]);
    body(&mut w);
    w.into_bytes()
}

/// A layout with default zero threshold and `schema`, then `spans` positive spans as
/// (length, offset) and no negative ones.
fn layout(w: &mut BitWriter, schema: i64, spans: &[(u64, i64)]) {
    put_zero_threshold(w, 2f64.powi(-128));
    put_varbit_int(w, schema);
    put_varbit_uint(w, spans.len() as u64);
    for &(length, offset) in spans {
        put_varbit_uint(w, length);
        put_varbit_int(w, offset);
    }
    put_varbit_uint(w, 0);
}

#[test]
fn every_truncation_of_every_fixture_chunk_is_an_error() {
    for (encoding, data) in fixture_payloads() {
        let full = decode_any(encoding, &data).unwrap();
        for len in 0..data.len() {
            match decode_any(encoding, &data[..len]) {
                // Only the last byte's padding may go.
                Ok(n) => assert!(n == full && len + 1 == data.len(), "len {len}"),
                Err(ChunkError::MissingHistogramHeader { len: l }) => {
                    assert!(len < 3 && l == len)
                }
                Err(ChunkError::Truncated {
                    num_samples,
                    bit_len,
                    ..
                }) => {
                    assert_eq!(num_samples, full, "len {len}");
                    assert_eq!(bit_len, len as u64 * 8);
                }
                Err(ChunkError::HistogramCountTooLarge { .. }) => {}
                Err(e) => panic!("{encoding:?} truncated to {len}: {e}"),
            }
        }
    }
}

#[test]
fn counts_beyond_the_payload_are_refused_before_allocating() {
    // 2^40 spans.
    let data = payload(1, |w| {
        put_zero_threshold(w, 0.0);
        put_varbit_int(w, 0);
        put_varbit_uint(w, 1 << 40);
    });
    assert!(matches!(
        decode_histogram_chunk(&data),
        Err(ChunkError::HistogramCountTooLarge {
            field: "positive spans",
            count: 1_099_511_627_776,
            ..
        })
    ));
    // One span of 4 billion buckets.
    let data = payload(1, |w| layout(w, 0, &[(u64::from(u32::MAX), 0)]));
    for r in [
        decode_histogram_chunk(&data).map(|_| ()),
        decode_float_histogram_chunk(&data).map(|_| ()),
    ] {
        assert!(matches!(
            r,
            Err(ChunkError::HistogramCountTooLarge {
                field: "buckets",
                ..
            })
        ));
    }
    // A span length beyond 32 bits.
    let data = payload(1, |w| layout(w, 0, &[(1 << 33, 0)]));
    assert!(matches!(
        decode_histogram_chunk(&data),
        Err(ChunkError::HistogramSpanOutOfRange {
            length: 8_589_934_592,
            offset: 0,
            ..
        })
    ));
    // 2^40 custom bounds.
    let data = payload(1, |w| {
        put_zero_threshold(w, 0.0);
        put_varbit_int(w, -53);
        put_varbit_uint(w, 0);
        put_varbit_uint(w, 0);
        put_varbit_uint(w, 1 << 40);
    });
    assert!(matches!(
        decode_histogram_chunk(&data),
        Err(ChunkError::HistogramCountTooLarge {
            field: "custom bounds",
            ..
        })
    ));
    // 65535 samples announced, one written: the iterator stops at the truncation.
    let mut data = payload(1, |w| {
        layout(w, 0, &[]);
        put_varbit_int(w, 5);
        put_varbit_uint(w, 0);
        put_varbit_uint(w, 0);
        w.write_bits(0, 64);
    });
    data[..2].copy_from_slice(&[0xff, 0xff]);
    assert!(matches!(
        decode_histogram_chunk(&data),
        Err(ChunkError::Truncated { sample: 1, .. })
    ));
}

#[test]
fn unknown_schemas_are_named() {
    for schema in [9, -5, -52, 52, 1 << 40, -(1 << 40)] {
        let data = payload(1, |w| layout(w, schema, &[]));
        assert_eq!(
            decode_histogram_chunk(&data).unwrap_err(),
            ChunkError::UnknownHistogramSchema { schema },
            "{schema}"
        );
        assert_eq!(
            decode_float_histogram_chunk(&data).unwrap_err(),
            ChunkError::UnknownHistogramSchema { schema }
        );
    }
}

/// A custom-bucket layout with `bounds` and one positive span of `length` at `offset`.
fn nhcb_payload(bounds: &[f64], offset: i64, length: u64, negative: bool) -> Vec<u8> {
    payload(1, |w| {
        put_zero_threshold(w, 0.0);
        put_varbit_int(w, -53);
        put_varbit_uint(w, 1);
        put_varbit_uint(w, length);
        put_varbit_int(w, offset);
        put_varbit_uint(w, u64::from(negative));
        if negative {
            put_varbit_uint(w, 1);
            put_varbit_int(w, 0);
        }
        put_varbit_uint(w, bounds.len() as u64);
        for &b in bounds {
            put_custom_bound(w, b);
        }
        put_varbit_int(w, 0);
        put_varbit_uint(w, 1);
        put_varbit_uint(w, 0);
        w.write_bits(1f64.to_bits(), 64);
        for _ in 0..length + u64::from(negative) {
            put_varbit_int(w, 1);
        }
    })
}

#[test]
fn custom_bucket_layouts_must_give_every_bucket_a_bound() {
    assert_eq!(
        decode_histogram_chunk(&nhcb_payload(&[0.5, 1.0], 0, 3, false))
            .unwrap()
            .len(),
        1
    );
    let layout_error = |data: &[u8]| match decode_histogram_chunk(data) {
        Err(ChunkError::InvalidHistogramLayout { source }) => source,
        r => panic!("{r:?}"),
    };
    assert!(matches!(
        layout_error(&nhcb_payload(&[1.0, 0.5], 0, 2, false)),
        HistogramError::CustomBoundsNotIncreasing { index: 1, .. }
    ));
    assert!(matches!(
        layout_error(&nhcb_payload(&[0.5, f64::NAN], 0, 2, false)),
        HistogramError::CustomBoundsNotIncreasing { .. }
    ));
    assert_eq!(
        layout_error(&nhcb_payload(&[0.5, f64::INFINITY], 0, 2, false)),
        HistogramError::CustomBoundsInfinite
    );
    assert!(matches!(
        layout_error(&nhcb_payload(&[0.5, 1.0], 1, 3, false)),
        HistogramError::CustomBoundsTooFew { reach: 4, .. }
    ));
    assert!(matches!(
        layout_error(&nhcb_payload(&[0.5, 1.0], -1, 2, false)),
        HistogramError::SpanNegativeOffset { .. }
    ));
    assert_eq!(
        layout_error(&nhcb_payload(&[0.5, 1.0], 0, 2, true)),
        HistogramError::CustomBucketsNegativeBuckets
    );
}

#[test]
fn impossible_samples_are_named() {
    // Bucket deltas 2, -3: the second bucket holds -1 observations.
    let data = payload(1, |w| {
        layout(w, 0, &[(2, 0)]);
        put_varbit_int(w, 1000);
        put_varbit_uint(w, 1);
        put_varbit_uint(w, 0);
        w.write_bits(0, 64);
        put_varbit_int(w, 2);
        put_varbit_int(w, -3);
    });
    assert!(matches!(
        decode_histogram_chunk(&data),
        Err(ChunkError::InvalidHistogramSample {
            sample: 0,
            source: HistogramError::NegativeBucketCount { bucket: 1, .. }
        })
    ));
    // A sum header announcing 31 leading zeros and 63 significant bits.
    let data = payload(2, |w| {
        layout(w, 0, &[]);
        put_varbit_int(w, 1000);
        put_varbit_uint(w, 0);
        put_varbit_uint(w, 0);
        w.write_bits(0, 64);
        put_varbit_int(w, 0);
        put_varbit_int(w, 0);
        put_varbit_int(w, 0);
        w.write_bits(0b11, 2);
        w.write_bits(31, 5);
        w.write_bits(63, 6);
        w.write_bits(0, 64);
    });
    let mut it = HistogramIterator::new(&data).unwrap();
    assert!(it.next_sample().unwrap().is_some());
    let e = it.next_sample().unwrap_err();
    assert!(matches!(
        e,
        ChunkError::InvalidValueHeader {
            sample: 1,
            leading: 31,
            significant: 63,
            ..
        }
    ));
    // The error sticks.
    assert_eq!(it.next_sample().unwrap_err(), e);
    assert_eq!(it.seek(0).unwrap_err(), e);
}

/// One sample over `spans` (as (length, offset)), every bucket holding one observation.
fn one_sample(spans: &[(u64, i64)]) -> Vec<u8> {
    let buckets: u64 = spans.iter().map(|s| s.0).sum();
    payload(1, |w| {
        layout(w, 0, spans);
        put_varbit_int(w, 1000);
        put_varbit_uint(w, buckets);
        put_varbit_uint(w, 0);
        w.write_bits(1f64.to_bits(), 64);
        for k in 0..buckets {
            put_varbit_int(w, i64::from(k == 0));
        }
    })
}

#[test]
fn corrupt_spans_read_as_written_and_refuse_to_be_appended() {
    // Spans a stored sample cannot have, as Prometheus's reader takes them: empty spans, a
    // later span going back (as Prometheus 3.5 writes after some recodes), indices beyond i32.
    for spans in [
        &[(0, 0), (0, 5), (2, 1)][..],
        &[(2, 0), (1, -2)],
        &[(1, i64::from(i32::MAX)), (1, i64::from(i32::MAX))],
        &[
            (1, i64::from(i32::MIN)),
            (1, i64::from(i32::MAX)),
            (1, i64::from(i32::MAX)),
        ],
    ] {
        let data = one_sample(spans);
        let samples = decode_histogram_chunk(&data).unwrap();
        let h = &samples[0].1;
        assert_eq!(h.positive_spans.len(), spans.len());
        let back = spans.iter().skip(1).any(|s| s.1 < 0);
        // Validation names the first problem; appending refuses what does not validate.
        assert_eq!(h.validate().is_ok(), !back, "{spans:?}");
        let mut a = HistogramAppender::from_payload(&data).unwrap();
        let r = a.append(None, 2000, h);
        if back {
            assert!(
                matches!(r, Err(ChunkError::InvalidHistogram { .. })),
                "{r:?}"
            );
        } else {
            assert!(r.is_ok(), "{spans:?}: {r:?}");
        }
    }
    // A span of more buckets than the payload's bits can hold.
    let mut w = BitWriter::with_prefix_packed(vec![0, 1, 0]);
    layout(&mut w, 0, &[(1 << 20, 0)]);
    assert!(matches!(
        decode_histogram_chunk(&w.into_bytes()),
        Err(ChunkError::HistogramCountTooLarge {
            field: "buckets",
            ..
        }) | Err(ChunkError::Truncated { .. })
    ));
}

#[test]
fn headers_shorter_than_three_bytes_are_named() {
    for len in 0..3 {
        let data = vec![0u8; len];
        assert_eq!(
            HistogramIterator::new(&data).unwrap_err(),
            ChunkError::MissingHistogramHeader { len }
        );
        assert_eq!(
            FloatHistogramIterator::new(&data).unwrap_err(),
            ChunkError::MissingHistogramHeader { len }
        );
    }
    // A chunk of no samples holds nothing, whatever follows its header.
    assert_eq!(decode_histogram_chunk(&[0, 0, 0xc0, 0xff]).unwrap(), []);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_any(Encoding::Histogram, &data);
        let _ = decode_any(Encoding::FloatHistogram, &data);
    }

    #[test]
    fn random_streams_after_a_small_count_never_panic(count in 0u16..20, rest in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut data = count.to_be_bytes().to_vec();
        data.push(0);
        data.extend(rest);
        let _ = decode_any(Encoding::Histogram, &data);
        let _ = decode_any(Encoding::FloatHistogram, &data);
    }

    #[test]
    fn flipped_bits_in_prometheus_chunks_never_panic(idx in 0usize..1000, flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..4)) {
        let chunks = fixture_payloads();
        let (encoding, mut data) = chunks[idx % chunks.len()].clone();
        for (at, bit) in flips {
            let n = data.len();
            data[at % n] ^= 1 << bit;
        }
        let _ = decode_any(encoding, &data);
    }
}

/// Only a foreign payload holds a sample after a stale marker in the same chunk (Gauntlet and
/// Prometheus start a new chunk): it reads as the bits say, and an appender resumed from it
/// writes it so that it reads back the same.
#[test]
fn a_sample_after_a_stale_marker_resumes_as_read() {
    let mut a = HistogramAppender::new();
    let h = |count: u64| Histogram {
        count,
        sum: 1.0,
        positive_spans: vec![Span::new(0, 1)],
        positive_buckets: vec![count as i64],
        ..Histogram::default()
    };
    a.append_raw(1000, &h(3)).unwrap();
    a.append_raw(2000, &h(10)).unwrap();
    a.append_raw(3000, &Histogram::stale_marker()).unwrap();
    a.append_raw(4000, &h(12)).unwrap();
    let read = decode_histogram_chunk(a.bytes()).unwrap();
    assert!(read[2].1.is_stale());
    assert_eq!(
        (read[3].1.count, read[3].1.positive_counts()),
        (12, vec![12])
    );
    let resumed = HistogramAppender::from_payload(a.bytes()).unwrap();
    let again = decode_histogram_chunk(resumed.bytes()).unwrap();
    assert_eq!(again.len(), 4);
    for ((t, x), (u, y)) in read.iter().zip(&again) {
        assert!(t == u && x.identical(y), "{x:?} vs {y:?}");
    }
}
