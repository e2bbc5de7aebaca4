//! Native histograms as remote write carries them: Gauntlet's model to `prometheus.Histogram`.

use gauntlet_engine::histogram::{FloatHistogram, Histogram, Span};
use gauntlet_proto::prometheus as pb;

/// Spans as remote write carries them, from (offset, length) pairs.
pub fn spans(s: &[(i32, u32)]) -> Vec<pb::BucketSpan> {
    s.iter()
        .map(|&(offset, length)| pb::BucketSpan { offset, length })
        .collect()
}

/// Deltas of absolute counts, as integer histograms carry them.
pub fn deltas(counts: &[u64]) -> Vec<i64> {
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

/// Bucket spans as remote write carries them.
pub fn spans_pb(spans: &[Span]) -> Vec<pb::BucketSpan> {
    spans
        .iter()
        .map(|s| pb::BucketSpan {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

/// An integer histogram at `t` (ms): counts and delta-encoded buckets, its hint kept.
pub fn int_pb(t: i64, h: &Histogram) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    pb::Histogram {
        count: Some(Count::CountInt(h.count)),
        zero_count: Some(ZeroCount::ZeroCountInt(h.zero_count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        negative_spans: spans_pb(&h.negative_spans),
        negative_deltas: h.negative_buckets.clone(),
        positive_spans: spans_pb(&h.positive_spans),
        positive_deltas: h.positive_buckets.clone(),
        reset_hint: h.counter_reset_hint as i32,
        timestamp: t,
        custom_values: h.custom_values.to_vec(),
        ..Default::default()
    }
}

/// A float histogram at `t` (ms): counts and absolute bucket counts, its hint kept.
pub fn float_pb(t: i64, h: &FloatHistogram) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    pb::Histogram {
        count: Some(Count::CountFloat(h.count)),
        zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        negative_spans: spans_pb(&h.negative_spans),
        negative_counts: h.negative_buckets.clone(),
        positive_spans: spans_pb(&h.positive_spans),
        positive_counts: h.positive_buckets.clone(),
        reset_hint: h.counter_reset_hint as i32,
        timestamp: t,
        custom_values: h.custom_values.to_vec(),
        ..Default::default()
    }
}
