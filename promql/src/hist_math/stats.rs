//! PromQL's statistics of one native histogram: `histogram_quantile`, `histogram_fraction`,
//! `histogram_stdvar`, `histogram_stddev` and `histogram_avg`, with the semantics of
//! Prometheus 3.5 (and 3.14's where it changed them). They read the buckets through the
//! engine's iterators ([`FloatHistogram::all_buckets_iter`]) and never panic on a broken
//! layout: they stop where the spans or the buckets end.

use gauntlet_engine::go_math;
use gauntlet_engine::histogram::{Bucket, FloatHistogram};

use crate::Compat;
use crate::functions::kahan_inc;

/// PromQL's `histogram_quantile(q, h)` for a native histogram: the value below which a
/// fraction `q` of the observations lie. Within an exponential bucket the observations are
/// assumed spread as they would fill finer buckets evenly (interpolation on a log2 scale);
/// within a custom bucket or the zero bucket, evenly (linear interpolation). The zero bucket
/// starts at 0 when there are only positive buckets and ends at 0 when there are only
/// negative ones; a custom histogram's first bucket starts at 0 (or answers its upper bound if
/// that is at most 0) and its +Inf bucket answers its lower bound.
///
/// NaN when `q` is NaN or the histogram has no observations; -Inf for `q < 0`, +Inf for
/// `q > 1`. When NaN observations (a NaN sum) leave the buckets short of the rank, the upper
/// bound of the highest bucket.
pub(crate) fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    // From below for small q (and always with NaN observations, which are in the count but
    // in no bucket), from above otherwise, for precision at the far end.
    let forward = h.sum.is_nan() || q < 0.5;
    let (mut it, mut rank) = if forward {
        (h.all_buckets_iter(), q * h.count)
    } else {
        (h.all_buckets_reverse_iter(), (1.0 - q) * h.count)
    };
    let mut bucket = Bucket::default();
    let mut count = 0.0;
    for b in &mut it {
        bucket = b;
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        if count >= rank {
            break;
        }
    }
    let custom = h.uses_custom_buckets();
    if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if custom {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return bucket.upper;
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    // Float error may leave the buckets' total above the count.
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        // Past every bucket: the rank falls among the NaN observations (counted, in no
        // bucket), or float error left the buckets' total short of the count.
        return if h.sum.is_nan() {
            f64::NAN
        } else {
            bucket.upper
        };
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / bucket.count;
    if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let log_lower = go_math::log2(bucket.lower.abs());
    let log_upper = go_math::log2(bucket.upper.abs());
    if bucket.lower > 0.0 {
        go_math::exp2(log_lower + (log_upper - log_lower) * fraction)
    } else {
        -go_math::exp2(log_upper + (log_lower - log_upper) * (1.0 - fraction))
    }
}

/// PromQL's `histogram_fraction(lower, upper, h)`: the estimated fraction of observations
/// between `lower` and `upper`, interpolated inside buckets as [`quantile`] does. NaN when
/// either bound is NaN or the histogram has no observations; 0 when `lower >= upper`. Under
/// Prometheus 3.14 a bound inside a bucket that reaches down to -Inf ranks at that bucket's
/// end (3.5 interpolates it to NaN), so such a bucket adds nothing to a fraction that starts
/// inside it.
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram, compat: Compat) -> f64 {
    let skip_infinite = compat.at_least_3_14();
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let custom = h.uses_custom_buckets();
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for mut b in h.all_buckets_iter() {
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        let interpolate = |v: f64| -> f64 {
            if custom || zero_bucket {
                if skip_infinite && b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                return rank + b.count * (v - b.lower) / (b.upper - b.lower);
            }
            let log_lower = go_math::log2(b.lower.abs());
            let log_upper = go_math::log2(b.upper.abs());
            let log_v = go_math::log2(v.abs());
            let fraction = if v > 0.0 {
                (log_v - log_lower) / (log_upper - log_lower)
            } else {
                1.0 - (log_v - log_upper) / (log_lower - log_upper)
            };
            rank + b.count * fraction
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    // A bound past every bucket ranks at the buckets' total, which leaves NaN observations
    // (counted, in no bucket) out of every fraction.
    if !lower_set {
        lower_rank = rank;
    }
    if !upper_set {
        upper_rank = rank;
    }
    lower_rank = lower_rank.min(h.count);
    upper_rank = upper_rank.min(h.count);
    (upper_rank - lower_rank) / h.count
}

/// PromQL's `histogram_stdvar(h)`: the variance of the observations, each bucket's taken at
/// its midpoint (geometric for exponential buckets, arithmetic for custom ones, 0 for the zero
/// bucket) around the mean `sum / count`, summed with Kahan-Neumaier compensation.
pub(crate) fn stdvar(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut variance, mut compensation) = (0.0, 0.0);
    for b in h.all_buckets_iter() {
        if b.count == 0.0 {
            continue;
        }
        let value = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -v } else { v }
        };
        let delta = value - mean;
        (variance, compensation) = kahan_inc(b.count * delta * delta, variance, compensation);
    }
    (variance + compensation) / h.count
}

/// PromQL's `histogram_stddev(h)`: the square root of [`stdvar`].
pub(crate) fn stddev(h: &FloatHistogram) -> f64 {
    stdvar(h).sqrt()
}

/// PromQL's `histogram_avg(h)`: `sum / count`.
pub(crate) fn avg(h: &FloatHistogram) -> f64 {
    h.sum / h.count
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
