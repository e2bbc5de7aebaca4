//! Validation and conversions of the histogram model.

use super::*;

fn sp(offset: i32, length: u32) -> Span {
    Span::new(offset, length)
}

/// Buckets 0, 1, 3 (counts 2, 1, 3) and negative bucket -1 (count 1), zero count 1: count 8.
fn valid() -> Histogram {
    Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: 1,
        count: 8,
        sum: 12.5,
        positive_spans: vec![sp(0, 2), sp(1, 1)],
        positive_buckets: vec![2, -1, 2],
        negative_spans: vec![sp(-1, 1)],
        negative_buckets: vec![1],
        ..Histogram::default()
    }
}

fn nhcb() -> Histogram {
    Histogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 6,
        sum: 3.0,
        positive_spans: vec![sp(0, 2), sp(1, 1)],
        positive_buckets: vec![1, 1, 1],
        custom_values: [0.1, 0.5, 1.0].into(),
        ..Histogram::default()
    }
}

#[test]
fn valid_histograms_pass() {
    assert_eq!(valid().validate(), Ok(()));
    assert_eq!(nhcb().validate(), Ok(()));
    assert_eq!(Histogram::default().validate(), Ok(()));
    assert_eq!(Histogram::stale_marker().validate(), Ok(()));
    assert_eq!(valid().to_float().validate(), Ok(()));
    assert_eq!(nhcb().to_float().validate(), Ok(()));
    // NaN observations are counted but land in no bucket.
    let mut h = valid();
    h.sum = f64::NAN;
    h.count = 10;
    assert_eq!(h.validate(), Ok(()));
}

#[test]
fn each_rule_has_its_error() {
    let mut h = valid();
    h.schema = 9;
    assert_eq!(
        h.validate(),
        Err(HistogramError::UnknownSchema { schema: 9 })
    );
    h.schema = -5;
    assert!(matches!(
        h.validate(),
        Err(HistogramError::UnknownSchema { .. })
    ));

    let mut h = valid();
    h.positive_spans[1].offset = -1;
    assert_eq!(
        h.validate(),
        Err(HistogramError::SpanNegativeOffset {
            side: Side::Positive,
            span: 1,
            offset: -1
        })
    );

    let mut h = valid();
    h.positive_buckets.push(0);
    assert_eq!(
        h.validate(),
        Err(HistogramError::SpansBucketsMismatch {
            side: Side::Positive,
            spans: 3,
            buckets: 4
        })
    );

    let mut h = valid();
    h.positive_buckets = vec![2, -3, 4];
    assert!(matches!(
        h.validate(),
        Err(HistogramError::NegativeBucketCount {
            side: Side::Positive,
            bucket: 1,
            ..
        })
    ));

    let mut h = valid();
    h.count = 9;
    assert_eq!(
        h.validate(),
        Err(HistogramError::CountMismatch {
            count: 9,
            in_buckets: 8
        })
    );
    h.sum = f64::NAN;
    h.count = 7;
    assert_eq!(
        h.validate(),
        Err(HistogramError::CountNotBigEnough {
            count: 7,
            in_buckets: 8
        })
    );

    let mut h = valid();
    h.positive_buckets = vec![i64::MAX, 0, 0];
    h.negative_buckets = vec![i64::MAX];
    assert!(h.validate().is_err());

    let mut h = valid();
    h.custom_values = [1.0].into();
    assert!(matches!(
        h.validate(),
        Err(HistogramError::ExponentialWithCustomBounds { .. })
    ));
}

#[test]
fn custom_bucket_rules() {
    let mut h = nhcb();
    h.custom_values = [0.5, 0.1, 1.0].into();
    assert!(matches!(
        h.validate(),
        Err(HistogramError::CustomBoundsNotIncreasing { index: 1, .. })
    ));
    h.custom_values = [0.1, f64::NAN, 1.0].into();
    assert!(matches!(
        h.validate(),
        Err(HistogramError::CustomBoundsNotIncreasing { index: 1, .. })
    ));
    h.custom_values = [0.1, 0.5, f64::INFINITY].into();
    assert_eq!(h.validate(), Err(HistogramError::CustomBoundsInfinite));
    // Spans reach bucket 4 (of 0..=3 with 3 bounds).
    h.custom_values = [0.1, 0.5].into();
    assert_eq!(
        h.validate(),
        Err(HistogramError::CustomBoundsTooFew {
            bounds: 2,
            reach: 4
        })
    );

    let mut h = nhcb();
    h.positive_spans[0].offset = -1;
    assert!(matches!(
        h.validate(),
        Err(HistogramError::SpanNegativeOffset { span: 0, .. })
    ));
    let mut h = nhcb();
    h.zero_count = 1;
    h.count = 7;
    assert!(matches!(
        h.validate(),
        Err(HistogramError::CustomBucketsZeroCount(_))
    ));
    let mut h = nhcb();
    h.zero_threshold = 0.5;
    assert!(matches!(
        h.validate(),
        Err(HistogramError::CustomBucketsZeroThreshold(_))
    ));
    let mut h = nhcb();
    h.negative_spans = vec![sp(0, 1)];
    h.negative_buckets = vec![1];
    assert_eq!(
        h.validate(),
        Err(HistogramError::CustomBucketsNegativeBuckets)
    );
}

#[test]
fn float_rules() {
    let mut f = valid().to_float();
    f.positive_buckets[2] = -0.5;
    assert!(matches!(
        f.validate(),
        Err(HistogramError::NegativeBucketCount { bucket: 2, .. })
    ));
    // The total is not compared with float buckets.
    let mut f = valid().to_float();
    f.count = 100.25;
    assert_eq!(f.validate(), Ok(()));
}

#[test]
fn conversions_round_trip() {
    for h in [valid(), nhcb(), Histogram::default()] {
        let f = h.to_float();
        assert_eq!(f.positive_buckets.len(), h.positive_buckets.len());
        let back = f.to_int().unwrap();
        assert!(back.identical(&h), "{h:?} -> {f:?} -> {back:?}");
    }
    let f = valid().to_float();
    assert_eq!(f.positive_buckets, [2.0, 1.0, 3.0]);
    assert_eq!(f.negative_buckets, [1.0]);
    assert_eq!(valid().positive_counts(), [2, 1, 3]);

    let mut f = valid().to_float();
    f.positive_buckets[1] = 1.5;
    assert!(matches!(
        f.to_int(),
        Err(HistogramError::NotIntegral { index: Some(1), .. })
    ));
    f.positive_buckets[1] = 1.0;
    f.count = -1.0;
    assert!(matches!(
        f.to_int(),
        Err(HistogramError::NotIntegral { .. })
    ));
    f.count = f64::NAN;
    assert!(f.to_int().is_err());
    f.count = 1e20;
    assert!(f.to_int().is_err());
}

#[test]
fn stale_markers_and_identity() {
    let s = Histogram::stale_marker();
    assert!(s.is_stale());
    assert!(s.identical(&Histogram::stale_marker()));
    // PartialEq compares floats as numbers, so NaN sums differ; `identical` compares bits.
    assert_ne!(s, Histogram::stale_marker());
    let mut nan = Histogram::stale_marker();
    nan.sum = f64::NAN;
    assert!(!nan.is_stale());
    assert!(!nan.identical(&s));
    assert!(FloatHistogram::stale_marker().is_stale());
    assert!(is_known_schema(-53) && is_known_schema(-4) && is_known_schema(8));
    assert!(!is_known_schema(-5) && !is_known_schema(9) && !is_known_schema(-52));
    assert!(custom_bounds_match(&[], &[]));
    assert!(!custom_bounds_match(&[1.0], &[1.0, 2.0]));
    assert_eq!(CounterResetHint::from_u8(3), Some(CounterResetHint::Gauge));
    assert_eq!(CounterResetHint::from_u8(4), None);
}
