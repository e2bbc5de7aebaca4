//! The trim operators `h </ x` (keep the observations below `x`) and `h >/ x` (keep those
//! above), as Prometheus 3.14 evaluates them.
//!
//! A bucket wholly on the kept side stays, a bucket wholly on the other side empties, and the
//! bucket the cut falls in keeps the share of its count on the kept side: by linear
//! interpolation for custom buckets, by logarithmic interpolation for exponential ones (where
//! observations are taken to spread evenly over the logarithm of their value). Once any bucket
//! changed, the count is the sum of what is kept and the sum is estimated from the kept part of
//! each bucket: its count times the middle of the kept interval (arithmetic for custom buckets,
//! geometric for exponential ones). A trim that changes no bucket leaves count and sum exactly
//! as they were.
//!
//! Buckets reaching to ±Inf (the custom buckets around the bounds) have no known spread, so a
//! cut inside one mostly drops it whole; a first custom bucket with a positive bound is taken
//! to start at 0. The zero bucket `[-t, t]` counts as starting at 0 when only positive buckets
//! hold observations, and as ending at 0 when only negative ones do.

use gauntlet_engine::histogram::{Bucket, FloatHistogram};

/// The side of the cut a trim keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrimKeep {
    /// `</`: the observations below the cut.
    Below,
    /// `>/`: the observations above the cut.
    Above,
}

/// What one bucket keeps: its count and the value that stands for its kept observations.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kept {
    count: f64,
    middle: f64,
}

/// Running totals of a trim, in the order Prometheus adds them (positive buckets, negative
/// buckets, zero bucket), so that the estimated sum rounds the same way.
#[derive(Default)]
struct Totals {
    count: f64,
    sum: f64,
    changed: bool,
}

impl Totals {
    fn add(&mut self, k: Kept) {
        self.count += k.count;
        self.sum += k.middle * k.count;
    }
}

/// `h` trimmed at `cut`, keeping the side `keep` names; `h` itself is left as it was.
pub(crate) fn trim(h: &FloatHistogram, cut: f64, keep: TrimKeep) -> FloatHistogram {
    let mut out = h.clone();
    let linear = h.uses_custom_buckets();
    let mut totals = Totals::default();
    let has_positive = trim_side(
        h.positive_buckets_iter(),
        &mut out.positive_buckets,
        (cut, keep, linear, true),
        &mut totals,
    );
    let has_negative = trim_side(
        h.negative_buckets_iter(),
        &mut out.negative_buckets,
        (cut, keep, linear, false),
        &mut totals,
    );
    if h.zero_count > 0.0
        && let Some(zero) = h.zero_bucket()
    {
        let kept = zero_bucket_kept(&zero, cut, keep, has_positive, has_negative);
        if kept.count != out.zero_count {
            out.zero_count = kept.count;
            totals.changed = true;
        }
        totals.add(kept);
    }
    if totals.changed {
        out.count = totals.count;
        out.sum = totals.sum;
        // The spans came valid from `h`, and emptying buckets cannot break them.
        let _ = out.compact(0);
    }
    out
}

/// Trims the buckets of one side (`counts` are theirs, in the same order), adding what is kept
/// to `totals`; true when a bucket of this side held observations.
fn trim_side(
    buckets: impl Iterator<Item = Bucket>,
    counts: &mut [f64],
    (cut, keep, linear, positive): (f64, TrimKeep, bool, bool),
    totals: &mut Totals,
) -> bool {
    let mut populated = false;
    for (slot, b) in counts.iter_mut().zip(buckets) {
        if b.count == 0.0 {
            continue;
        }
        populated = true;
        let (whole, partly) = match keep {
            TrimKeep::Below => (b.upper <= cut, b.lower < cut),
            TrimKeep::Above => (b.lower >= cut, b.upper > cut),
        };
        if whole {
            totals.add(Kept {
                count: b.count,
                middle: middle(b.lower, b.upper, positive, linear),
            });
        } else if partly {
            let kept = cut_bucket(&b, cut, keep, positive, linear);
            totals.add(kept);
            if *slot != kept.count {
                *slot = kept.count;
                totals.changed = true;
            }
        } else {
            *slot = 0.0;
            totals.changed = true;
        }
    }
    populated
}

/// What the bucket `b`, which the cut falls in, keeps.
fn cut_bucket(b: &Bucket, cut: f64, keep: TrimKeep, positive: bool, linear: bool) -> Kept {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket_kept(b, cut, keep);
    }
    let below = count_below(b, cut, positive, linear);
    match keep {
        TrimKeep::Below => Kept {
            count: below,
            middle: middle(b.lower, cut, positive, linear),
        },
        TrimKeep::Above => Kept {
            count: b.count - below,
            middle: middle(cut, b.upper, positive, linear),
        },
    }
}

/// The share of `b`'s count below `cut`: linear in the value for custom buckets, linear in its
/// logarithm for exponential ones (mirrored for negative buckets, whose absolute values grow
/// downwards).
fn count_below(b: &Bucket, cut: f64, positive: bool, linear: bool) -> f64 {
    if cut <= b.lower {
        return 0.0;
    }
    if cut >= b.upper {
        return b.count;
    }
    let fraction = if linear {
        (cut - b.lower) / (b.upper - b.lower)
    } else {
        let (lo, hi, at) = (b.lower.abs().log2(), b.upper.abs().log2(), cut.abs().log2());
        if positive {
            (at - lo) / (hi - lo)
        } else {
            1.0 - (at - hi) / (lo - hi)
        }
    };
    b.count * fraction
}

/// The value standing for the observations in `[lower, upper]`: the arithmetic middle for
/// custom buckets, the geometric one (signed as the side) for exponential buckets. An infinite
/// bound leaves the finite one (half of it for a positive upper bound, the interval then taken
/// to start at 0), or 0 when both are infinite.
fn middle(lower: f64, upper: f64, positive: bool, linear: bool) -> f64 {
    match (lower.is_infinite(), upper.is_infinite()) {
        (true, true) => 0.0,
        (true, false) if upper > 0.0 => upper / 2.0,
        (true, false) => upper,
        (false, true) => lower,
        (false, false) if linear => (lower + upper) / 2.0,
        (false, false) => {
            let g = (lower * upper).abs().sqrt();
            if positive { g } else { -g }
        }
    }
}

/// What a custom bucket reaching to -Inf or +Inf keeps of a cut that falls in it. Its spread is
/// unknown, so it is kept whole where the cut cannot touch its observations, interpolated from
/// 0 where its finite bound is positive and it starts at -Inf, and otherwise dropped.
fn infinite_bucket_kept(b: &Bucket, cut: f64, keep: TrimKeep) -> Kept {
    let finite_or_zero = |x: f64| if x.is_infinite() { 0.0 } else { x };
    let dropped = |at: f64| Kept {
        count: 0.0,
        middle: finite_or_zero(at),
    };
    if b.lower == f64::NEG_INFINITY {
        return match keep {
            TrimKeep::Below if cut >= b.upper => Kept {
                count: b.count,
                middle: 0.0,
            },
            TrimKeep::Below if cut > 0.0 && b.upper > 0.0 && b.upper.is_finite() => Kept {
                count: b.count * cut / b.upper,
                middle: cut / 2.0,
            },
            TrimKeep::Below if b.upper <= 0.0 => Kept {
                count: b.count,
                middle: cut,
            },
            TrimKeep::Below => dropped(b.upper),
            TrimKeep::Above if cut <= b.lower => Kept {
                count: b.count,
                middle: 0.0,
            },
            TrimKeep::Above if cut >= 0.0 && b.upper > cut && b.upper.is_finite() => Kept {
                count: b.count * (1.0 - cut / b.upper),
                middle: (cut + b.upper) / 2.0,
            },
            TrimKeep::Above => dropped(b.upper),
        };
    }
    // The bucket ends at +Inf: keeping what is below the cut may always lose some of it.
    match keep {
        TrimKeep::Above if cut >= b.lower => Kept {
            count: b.count,
            middle: cut,
        },
        _ => dropped(b.lower),
    }
}

/// What the zero bucket keeps: a linear share of `[-t, t]`, narrowed to `[0, t]` when only
/// positive buckets hold observations and to `[-t, 0]` when only negative ones do.
fn zero_bucket_kept(
    zero: &Bucket,
    cut: f64,
    keep: TrimKeep,
    has_positive: bool,
    has_negative: bool,
) -> Kept {
    let (mut lower, mut upper) = (zero.lower, zero.upper);
    if has_negative && !has_positive {
        upper = 0.0;
    }
    if has_positive && !has_negative {
        lower = 0.0;
    }
    let all = Kept {
        count: zero.count,
        middle: (lower + upper) / 2.0,
    };
    let none = Kept {
        count: 0.0,
        middle: 0.0,
    };
    let width = upper - lower;
    match keep {
        TrimKeep::Below if cut <= lower => none,
        TrimKeep::Below if cut >= upper => all,
        TrimKeep::Below => Kept {
            count: zero.count * ((cut - lower) / width),
            middle: (lower + cut) / 2.0,
        },
        TrimKeep::Above if cut <= lower => all,
        TrimKeep::Above if cut >= upper => none,
        TrimKeep::Above => Kept {
            count: zero.count * ((upper - cut) / width),
            middle: (cut + upper) / 2.0,
        },
    }
}
