//! The trim operators at the level of the histogram: bucket bounds and cuts inside buckets, the
//! zero bucket on either side of zero, custom buckets reaching to ±Inf, cuts at ±Inf and NaN,
//! and empty histograms.

use super::{TrimKeep, trim};
use crate::hist_notation::parse_histogram;
use gauntlet_engine::histogram::FloatHistogram;

fn h(s: &str) -> FloatHistogram {
    parse_histogram(s).unwrap()
}

/// Non-empty buckets of one side by index, as the test scripts compare them.
fn buckets(spans: &[gauntlet_engine::histogram::Span], counts: &[f64]) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut idx = 0i64;
    let mut k = 0;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 {
            i64::from(s.offset)
        } else {
            idx + i64::from(s.offset)
        };
        for _ in 0..s.length {
            if counts[k] != 0.0 {
                out.push((idx, counts[k]));
            }
            idx += 1;
            k += 1;
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[track_caller]
fn assert_same(got: &FloatHistogram, want: &FloatHistogram) {
    let pairs = |a: Vec<(i64, f64)>, b: Vec<(i64, f64)>| {
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && close(x.1, y.1))
    };
    let ok = got.schema == want.schema
        && close(got.count, want.count)
        && close(got.sum, want.sum)
        && close(got.zero_count, want.zero_count)
        && got.zero_threshold == want.zero_threshold
        && pairs(
            buckets(&got.positive_spans, &got.positive_buckets),
            buckets(&want.positive_spans, &want.positive_buckets),
        )
        && pairs(
            buckets(&got.negative_spans, &got.negative_buckets),
            buckets(&want.negative_spans, &want.negative_buckets),
        )
        && got.custom_values == want.custom_values;
    assert!(ok, "got {got:?}\nwant {want:?}");
}

const EXP: &str =
    "schema:0 sum:123.75 count:34 z_bucket:1 z_bucket_w:0.001 buckets:[2 4 8 16] n_buckets:[1 2]";

#[test]
fn cut_on_a_bucket_bound_keeps_whole_buckets() {
    let x = h(EXP);
    let below = trim(&x, 2.0, TrimKeep::Below);
    assert_same(
        &below,
        &h(
            "count:10 sum:3.5355339059327373 z_bucket:1 z_bucket_w:0.001 buckets:[2 4] n_buckets:[1 2]",
        ),
    );
    let above = trim(&x, 2.0, TrimKeep::Above);
    assert_same(
        &above,
        &h("count:24 sum:113.13708498984761 z_bucket_w:0.001 offset:2 buckets:[8 16]"),
    );
    // What each side keeps adds up to the whole.
    assert!(close(below.count + above.count, x.count));
}

#[test]
fn cut_inside_an_exponential_bucket_interpolates_logarithmically() {
    // √2 is halfway between 1 and 2 on the logarithmic scale.
    let x = h(EXP);
    assert_same(
        &trim(&x, std::f64::consts::SQRT_2, TrimKeep::Below),
        &h(
            "count:8 sum:0.2570938865989847 z_bucket:1 z_bucket_w:0.001 buckets:[2 2] n_buckets:[1 2]",
        ),
    );
    let neg = h(
        "schema:2 sum:12.8286080906 count:28 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 4 7 3] n_buckets:[1 5 3 1]",
    );
    assert_same(
        &trim(&neg, -1.3, TrimKeep::Above),
        &h(
            "schema:2 count:25.54213947904476 sum:16.29588491217537 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 4 7 3] n_buckets:[1 5 1.54213947904476]",
        ),
    );
}

#[test]
fn the_zero_bucket_straddles_zero_unless_one_side_is_empty() {
    // Both sides populated: a cut at 0 halves the zero bucket.
    let x = h(EXP);
    assert_same(
        &trim(&x, 0.0, TrimKeep::Above),
        &h("sum:120.20840280171308 count:30.5 z_bucket:0.5 z_bucket_w:0.001 buckets:[2 4 8 16]"),
    );
    // Only positive buckets: the zero bucket spans [0, t], so a cut at 0 keeps it all above
    // and none of it below.
    let pos = h("schema:0 sum:8.0210678118654755 count:12 z_bucket:2 z_bucket_w:0.5 buckets:[10]");
    assert!(trim(&pos, 0.0, TrimKeep::Above).identical(&pos));
    assert_same(
        &trim(&pos, 0.0, TrimKeep::Below),
        &h("schema:0 z_bucket_w:0.5"),
    );
    assert_same(
        &trim(&pos, 0.1, TrimKeep::Above),
        &h("schema:0 count:11.6 sum:7.551067811865476 z_bucket:1.6 z_bucket_w:0.5 buckets:[10]"),
    );
    // Only negative buckets: it spans [-t, 0].
    let neg =
        h("schema:0 sum:-8.0210678118654755 count:12 z_bucket:2 z_bucket_w:0.5 n_buckets:[10]");
    assert_same(
        &trim(&neg, -0.1, TrimKeep::Below),
        &h("schema:0 count:11.6 sum:-7.551067811865476 z_bucket:1.6 z_bucket_w:0.5 n_buckets:[10]"),
    );
    // Nothing but the zero bucket: [-t, t].
    let zero = h("schema:0 count:5 sum:0 z_bucket:5 z_bucket_w:0.1");
    assert_same(
        &trim(&zero, 0.05, TrimKeep::Above),
        &h("schema:0 count:1.25 sum:0.09375 z_bucket:1.25 z_bucket_w:0.1"),
    );
    assert_same(
        &trim(&zero, -0.1, TrimKeep::Below),
        &h("schema:0 count:0 sum:0 z_bucket:0 z_bucket_w:0.1"),
    );
}

#[test]
fn custom_buckets_interpolate_linearly_and_treat_infinite_buckets_conservatively() {
    let x = h("schema:-53 sum:172.5 count:15 custom_values:[5 10 15 20] buckets:[1 6 4 3 1]");
    assert_same(
        &trim(&x, 13.0, TrimKeep::Below),
        &h("schema:-53 count:9.4 sum:75.1 custom_values:[5 10 15 20] buckets:[1 6 2.4]"),
    );
    // The +Inf bucket goes whole from a `</`, even with the cut above its lower bound.
    assert_same(
        &trim(&x, 50.0, TrimKeep::Below),
        &h("schema:-53 count:14 sum:150.0 custom_values:[5 10 15 20] buckets:[1 6 4 3]"),
    );
    // The first bucket, (-Inf, 5], is taken to start at 0 for a positive cut.
    let two = h("schema:-53 sum:33 count:101 custom_values:[5] buckets:[1 100]");
    assert_same(
        &trim(&two, 2.0, TrimKeep::Below),
        &h("schema:-53 sum:0.4 count:0.4 custom_values:[5] buckets:[0.4 0]"),
    );
    assert_same(
        &trim(&two, 2.0, TrimKeep::Above),
        &h("schema:-53 sum:502.1 count:100.6 custom_values:[5] buckets:[0.6 100]"),
    );
    // A `>/` above the last bound keeps the +Inf bucket, its observations counted at the cut.
    assert_same(
        &trim(&two, 10.0, TrimKeep::Above),
        &h("schema:-53 sum:1000 count:100 custom_values:[5] buckets:[0 100]"),
    );
    // One bucket from -Inf to +Inf: nothing is known of it, so any finite cut drops it.
    let one = h("schema:-53 sum:100 count:100 buckets:[100]");
    assert_same(
        &trim(&one, 10.0, TrimKeep::Below),
        &h("schema:-53 sum:0 count:0"),
    );
    assert!(trim(&one, f64::INFINITY, TrimKeep::Below).identical(&one));
    assert!(trim(&one, f64::NEG_INFINITY, TrimKeep::Above).identical(&one));
}

#[test]
fn cuts_at_infinity_keep_all_or_nothing() {
    let x = h(EXP);
    assert!(trim(&x, f64::NEG_INFINITY, TrimKeep::Above).identical(&x));
    assert!(trim(&x, f64::INFINITY, TrimKeep::Below).identical(&x));
    let empty = h("schema:0 z_bucket_w:0.001");
    assert_same(&trim(&x, f64::INFINITY, TrimKeep::Above), &empty);
    assert_same(&trim(&x, f64::NEG_INFINITY, TrimKeep::Below), &empty);
}

#[test]
fn a_nan_cut_keeps_no_bucket() {
    let x = h(EXP);
    for keep in [TrimKeep::Below, TrimKeep::Above] {
        let t = trim(&x, f64::NAN, keep);
        assert!(t.positive_buckets.is_empty() && t.negative_buckets.is_empty());
        // The zero bucket's share is NaN, as Prometheus computes it.
        assert!(t.zero_count.is_nan() && t.count.is_nan());
    }
}

#[test]
fn empty_histograms_stay_as_they_are() {
    for s in ["", "schema:-53 custom_values:[-3 2]"] {
        let x = h(s);
        for cut in [f64::NEG_INFINITY, -5.0, 0.0, 5.0, f64::INFINITY] {
            for keep in [TrimKeep::Below, TrimKeep::Above] {
                assert!(trim(&x, cut, keep).identical(&x), "{s:?} {cut} {keep:?}");
            }
        }
    }
}

#[test]
fn the_input_is_not_changed() {
    let x = h(EXP);
    let before = x.clone();
    let _ = trim(&x, 1.5, TrimKeep::Below);
    assert!(x.identical(&before));
}
