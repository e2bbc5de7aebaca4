use super::*;
use crate::chunk::{AggrChunk, CounterResetHeader, FloatHistogramIterator, XorIterator};
use crate::histogram::Span;

/// A float histogram of schema 0 with buckets 0 and 1 holding `b0` and `b1`, read with `hint`.
fn h(b0: f64, b1: f64, hint: CounterResetHint) -> FloatHistogram {
    FloatHistogram {
        counter_reset_hint: hint,
        schema: 0,
        zero_threshold: 1e-3,
        zero_count: 0.0,
        count: b0 + b1,
        sum: b0 + b1,
        positive_spans: vec![Span::new(0, 2)],
        negative_spans: Vec::new(),
        positive_buckets: vec![b0, b1],
        negative_buckets: Vec::new(),
        custom_values: Default::default(),
    }
}

fn floats(sub: SubChunk<'_>) -> Vec<(i64, f64)> {
    let mut it = XorIterator::new(sub.data).unwrap();
    let mut out = Vec::new();
    while let Some(s) = it.next().unwrap() {
        out.push(s);
    }
    out
}

/// A histogram as the tests compare it: (t, count, buckets, sum).
type Read = (i64, f64, Vec<f64>, f64);

/// Each histogram of a float histogram sub-chunk, and the chunk's header.
fn hists(sub: SubChunk<'_>) -> (CounterResetHeader, Vec<Read>) {
    assert_eq!(sub.encoding, Encoding::FloatHistogram as u8);
    let mut it = FloatHistogramIterator::new(sub.data).unwrap();
    let header = it.counter_reset_header();
    let mut out = Vec::new();
    while let Some((t, h)) = it.next().unwrap() {
        out.push((t, h.count, h.positive_buckets.clone(), h.sum));
    }
    (header, out)
}

#[test]
fn counter_histograms_aggregate_to_count_sum_and_reset_adjusted_counter() {
    use CounterResetHint::{NotCounterReset, Unknown};
    // Two 5m windows; the counter resets at 300 s (the first sample of its chunk, hint
    // unknown: the drop in count says it is a reset).
    let data = vec![
        (0, h(1.0, 2.0, Unknown)),
        (100_000, h(2.0, 3.0, NotCounterReset)),
        (200_000, h(2.0, 4.0, NotCounterReset)),
        (300_000, h(1.0, 1.0, Unknown)),
        (400_000, h(2.0, 2.0, NotCounterReset)),
    ];
    let out = downsample_raw_histograms(&data, 300_000).unwrap();
    assert_eq!(out.len(), 1);
    let c = &out[0];
    // The second window ends at the last sample.
    assert_eq!((c.min_time, c.max_time), (299_999, 400_000));
    let a = AggrChunk::new(&c.data);
    assert_eq!(
        floats(a.get(AggrType::Count).unwrap()),
        vec![(299_999, 3.0), (400_000, 2.0)]
    );
    assert!(a.get(AggrType::Min).is_err(), "no min for histograms");
    assert!(a.get(AggrType::Max).is_err(), "no max for histograms");
    // Sum: h0 + h1 + h2, then h3 + h4; a gauge chunk.
    let (header, sum) = hists(a.get(AggrType::Sum).unwrap());
    assert_eq!(header, CounterResetHeader::Gauge);
    assert_eq!(
        sum,
        vec![
            (299_999, 14.0, vec![5.0, 9.0], 14.0),
            (400_000, 6.0, vec![3.0, 3.0], 6.0)
        ]
    );
    // Counter: h2 at the first window's end; then h2 + h3 (the reset) + (h4 - h3).
    let (header, counter) = hists(a.get(AggrType::Counter).unwrap());
    assert_eq!(header, CounterResetHeader::NotCounterReset);
    assert_eq!(
        counter,
        vec![
            (299_999, 6.0, vec![2.0, 4.0], 6.0),
            (400_000, 10.0, vec![4.0, 6.0], 10.0)
        ]
    );
}

#[test]
fn finer_schemas_are_brought_down_to_the_batch_smallest_and_stale_markers_dropped() {
    use CounterResetHint::{NotCounterReset, Unknown};
    // Schema 1 buckets 1 and 2 fall into schema 0 buckets 1 and 1: ((i - 1) >> 1) + 1.
    let mut fine = h(1.0, 3.0, NotCounterReset);
    fine.schema = 1;
    fine.positive_spans = vec![Span::new(1, 2)];
    let mut stale = h(0.0, 0.0, NotCounterReset);
    stale.sum = f64::from_bits(crate::chunk::STALE_NAN_BITS);
    let data = vec![(0, h(1.0, 2.0, Unknown)), (10_000, stale), (20_000, fine)];
    let out = downsample_raw_histograms(&data, 300_000).unwrap();
    let a = AggrChunk::new(&out[0].data);
    assert_eq!(floats(a.get(AggrType::Count).unwrap()), vec![(20_000, 2.0)]);
    let (_, sum) = hists(a.get(AggrType::Sum).unwrap());
    assert_eq!(sum, vec![(20_000, 7.0, vec![1.0, 6.0], 7.0)]);
}

#[test]
fn five_minute_histogram_aggregates_downsample_to_one_hour() {
    use CounterResetHint::{NotCounterReset, Unknown};
    let data = vec![
        (0, h(1.0, 2.0, Unknown)),
        (100_000, h(2.0, 3.0, NotCounterReset)),
        (200_000, h(2.0, 4.0, NotCounterReset)),
        (300_000, h(1.0, 1.0, Unknown)),
        (400_000, h(2.0, 2.0, NotCounterReset)),
    ];
    let five = downsample_raw_histograms(&data, 300_000).unwrap();
    let views: Vec<AggrChunk<'_>> = five.iter().map(|c| AggrChunk::new(&c.data)).collect();
    assert!(is_histogram_aggregate(&views[0]));
    let hour = downsample_aggr_histograms(&views, 299_999, 400_000, 300_000, 3_600_000).unwrap();
    assert_eq!(hour.len(), 1);
    let a = AggrChunk::new(&hour[0].data);
    assert_eq!((hour[0].min_time, hour[0].max_time), (400_000, 400_000));
    assert_eq!(
        floats(a.get(AggrType::Count).unwrap()),
        vec![(400_000, 5.0)]
    );
    let (_, sum) = hists(a.get(AggrType::Sum).unwrap());
    assert_eq!(sum, vec![(400_000, 20.0, vec![8.0, 12.0], 20.0)]);
    // The 5m counters 6 then 10 do not reset: the hour's counter is the last.
    let (header, counter) = hists(a.get(AggrType::Counter).unwrap());
    assert_eq!(header, CounterResetHeader::NotCounterReset);
    assert_eq!(counter, vec![(400_000, 10.0, vec![4.0, 6.0], 10.0)]);
}
