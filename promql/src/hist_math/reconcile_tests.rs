//! Custom-bucket reconciliation and compensated sums at the level of the histogram: shared
//! bounds, buckets merged onto them (the +Inf bucket included), 3.5 refusing what 3.14
//! reconciles, reset detection across different bounds, and Kahan sums and means.

use std::sync::Arc;

use super::custom_bounds::{onto_bounds, shared_bounds};
use super::{KahanMean, KahanSum, MathError, add, detect_reset, sub};
use crate::Compat;
use crate::hist_notation::parse_histogram;
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Span};

fn h(s: &str) -> FloatHistogram {
    parse_histogram(s).unwrap()
}

const V3_5: Compat = Compat::Prometheus3_5;
const V3_14: Compat = Compat::Prometheus3_14;

#[test]
fn shared_bounds_keep_only_bounds_in_both() {
    assert_eq!(
        shared_bounds(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]),
        vec![2.0, 3.0]
    );
    assert_eq!(shared_bounds(&[1.0, 2.0], &[7.0, 8.0]), Vec::<f64>::new());
    assert_eq!(shared_bounds(&[], &[1.0]), Vec::<f64>::new());
    // NaN equals nothing and orders before nothing, so it is never shared and, as in
    // Prometheus's merge, ends the walk on its side (valid histograms hold no NaN bound).
    assert_eq!(shared_bounds(&[5.0, f64::NAN], &[5.0, f64::NAN]), vec![5.0]);
    assert_eq!(
        shared_bounds(&[f64::NAN, 5.0], &[f64::NAN, 5.0]),
        Vec::<f64>::new()
    );
    assert_eq!(
        shared_bounds(&[f64::NEG_INFINITY, 0.0], &[f64::NEG_INFINITY, 1.0]),
        vec![f64::NEG_INFINITY]
    );
}

#[test]
fn buckets_join_the_first_shared_bound_at_or_above_their_own() {
    // Bounds 1..8 onto [2 4 6]: (…,1] and (1,2] go to (…,2], (2,3] and (3,4] to (2,4], and so
    // on; (6,7], (7,8] and (8,+Inf] to the +Inf bucket.
    let x = h(
        "schema:-53 sum:555 count:450 custom_values:[1 2 3 4 5 6 7 8] buckets:[10 20 30 40 50 60 70 80 90]",
    );
    let bounds: Arc<[f64]> = vec![2.0, 4.0, 6.0].into();
    let r = onto_bounds(&x, &bounds);
    assert_eq!(r.positive_buckets, vec![30.0, 70.0, 110.0, 240.0]);
    assert_eq!(r.positive_spans, vec![Span::new(0, 4)]);
    assert_eq!(&*r.custom_values, &[2.0, 4.0, 6.0]);
    assert_eq!((r.count, r.sum), (450.0, 555.0));
    // Empty result buckets leave gaps between spans.
    let sparse = h("schema:-53 sum:1 count:2 custom_values:[1 2 3] buckets:[1 0 0 1]");
    let r = onto_bounds(&sparse, &vec![1.0, 2.0].into());
    assert_eq!(r.positive_buckets, vec![1.0, 1.0]);
    assert_eq!(r.positive_spans, vec![Span::new(0, 1), Span::new(1, 1)]);
    // No shared bound: everything lands in the one +Inf bucket.
    let r = onto_bounds(&x, &Vec::new().into());
    assert_eq!(r.positive_buckets, vec![450.0]);
    assert!(r.custom_values.is_empty());
}

#[test]
fn different_bounds_are_refused_by_3_5_and_reconciled_by_3_14() {
    let a = h("schema:-53 sum:1 count:1 custom_values:[10] buckets:[1]");
    let b = h("schema:-53 sum:1 count:1 custom_values:[2 10] buckets:[1]");
    assert_eq!(
        add(&a, &b, V3_5).unwrap_err(),
        MathError::IncompatibleSchemas
    );
    let (sum, reconciled) = add(&a, &b, V3_14).unwrap();
    assert!(reconciled);
    assert_eq!(&*sum.custom_values, &[10.0]);
    assert_eq!(sum.positive_buckets, vec![2.0]);
    assert_eq!((sum.count, sum.sum), (2.0, 2.0));
    let (diff, reconciled) = sub(&a, &b, V3_14).unwrap();
    assert!(reconciled);
    assert_eq!((diff.count, diff.sum), (0.0, 0.0));
    assert!(diff.positive_buckets.is_empty());
    // The same bounds need no reconciling, and exponential buckets still do not mix.
    assert!(!add(&a, &a, V3_14).unwrap().1);
    let exp = h("schema:0 sum:1 count:1 buckets:[1]");
    assert_eq!(add(&a, &exp, V3_14).unwrap_err(), MathError::MixedSchemas);
}

#[test]
fn resets_across_different_bounds_compare_the_shared_buckets() {
    let before = h("schema:-53 sum:1 count:1 custom_values:[5] buckets:[1]");
    let after = h("schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1]");
    // 3.5 calls any change of bounds a reset; 3.14 sees the same count in (…,5].
    assert!(detect_reset(&after, &before, V3_5));
    assert!(!detect_reset(&after, &before, V3_14));
    // Observations moving from (…,5] to (5,10] did decrease the shared bucket.
    let moved = h("schema:-53 sum:1 count:1 custom_values:[5 10] offset:1 buckets:[1]");
    assert!(detect_reset(&moved, &before, V3_14));
    // A lower count is a reset whatever the bounds.
    let fewer = h("schema:-53 sum:1 count:0 custom_values:[5 10]");
    assert!(detect_reset(&fewer, &before, V3_14));
}

#[test]
fn kahan_sums_keep_small_values_next_to_cancelling_large_ones() {
    let parts = [
        "count:1 sum:1",
        "count:2 sum:1e100",
        "count:3 sum:1",
        "count:4 sum:-1e100",
    ];
    let mut s = KahanSum::new(h(parts[0]));
    for p in &parts[1..] {
        assert!(!s.add(&h(p)).unwrap());
    }
    let r = s.finish();
    assert_eq!((r.count, r.sum), (10.0, 2.0));

    let mut m = KahanMean::new(h(parts[0]));
    for p in &parts[1..] {
        m.add(&h(p)).unwrap();
    }
    let r = m.finish();
    assert_eq!((r.count, r.sum), (2.5, 0.5));
}

#[test]
fn a_mean_whose_sum_overflows_goes_on_incrementally() {
    let big = h("count:1.7976931348623157e+308 sum:5.3");
    let mut m = KahanMean::new(big);
    for p in [
        "count:1e308 sum:1e100",
        "count:1e-6 sum:1",
        "count:1e-6 sum:-1e100",
    ] {
        m.add(&h(p)).unwrap();
    }
    let r = m.finish();
    let want_count = (1.7976931348623157e308 / 4.0) + (1e308 / 4.0);
    assert!(r.count.is_finite());
    assert!((r.count - want_count).abs() <= 1e-9 * want_count);
    assert!((r.sum - 6.3 / 4.0).abs() < 1e-9);
}

#[test]
fn scaling_by_a_negative_factor_makes_a_gauge_only_in_3_14() {
    let mut a = h("sum:4 count:4 buckets:[1 2 1]");
    a.counter_reset_hint = CounterResetHint::NotCounterReset;
    let mut b = a.clone();
    super::scale(&mut a, -1.0, V3_5);
    super::scale(&mut b, -1.0, V3_14);
    assert_eq!(a.counter_reset_hint, CounterResetHint::NotCounterReset);
    assert_eq!(b.counter_reset_hint, CounterResetHint::Gauge);
    let mut c = h("sum:4 count:4 buckets:[1 2 1]");
    super::divide(&mut c, 2.0, V3_14);
    assert_eq!(c.counter_reset_hint, CounterResetHint::Unknown);
}
