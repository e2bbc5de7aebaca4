//! Compensated sums and means of histograms, as Prometheus 3.14 computes `sum`, `avg`,
//! `sum_over_time` and `avg_over_time` of native histograms (3.5 adds them plainly and keeps
//! an incremental mean throughout).
//!
//! The count, the zero count and the sum of observations carry a Kahan (Neumaier)
//! compensation, added in when the result is taken, so that large values that cancel out do
//! not swallow small ones. A mean is the compensated sum divided by the number of histograms,
//! unless the sum overflows: from then on it is kept as an incremental mean, as for floats.

use gauntlet_engine::histogram::FloatHistogram;

use super::{MathError, add_to};
use crate::Compat;
use crate::functions::kahan_inc;

/// A running sum of histograms with compensated scalars.
#[derive(Debug, Clone)]
pub(crate) struct KahanSum {
    h: FloatHistogram,
    /// Compensation of the count, the zero count and the sum.
    c: [f64; 3],
}

impl KahanSum {
    /// A sum starting at `h`.
    pub(crate) fn new(h: FloatHistogram) -> Self {
        KahanSum { h, c: [0.0; 3] }
    }

    /// Adds `x`; true when custom bounds were reconciled.
    pub(crate) fn add(&mut self, x: &FloatHistogram) -> Result<bool, MathError> {
        let (count, zero, sum) = (self.h.count, self.h.zero_count, self.h.sum);
        let same_zero = !self.h.uses_custom_buckets() && self.h.zero_threshold == x.zero_threshold;
        let reconciled = add_to(&mut self.h, x, Compat::Prometheus3_14)?;
        (self.h.count, self.c[0]) = kahan_inc(x.count, count, self.c[0]);
        (self.h.sum, self.c[2]) = kahan_inc(x.sum, sum, self.c[2]);
        if same_zero {
            (self.h.zero_count, self.c[1]) = kahan_inc(x.zero_count, zero, self.c[1]);
        }
        Ok(reconciled)
    }

    /// Adds another running sum (of later input); true when custom bounds were reconciled.
    pub(crate) fn merge(&mut self, other: KahanSum) -> Result<bool, MathError> {
        let reconciled = self.add(&other.h)?;
        for (c, o) in self.c.iter_mut().zip(other.c) {
            *c += o;
        }
        Ok(reconciled)
    }

    fn scale(&mut self, f: f64) {
        self.h.mul(f);
        self.c.iter_mut().for_each(|c| *c *= f);
    }

    fn divide(&mut self, f: f64) {
        self.h.div(f);
        self.c.iter_mut().for_each(|c| *c /= f);
    }

    /// Whether a count, the sum or a bucket has overflowed to an infinity.
    fn overflowed(&self) -> bool {
        let h = &self.h;
        [h.count, h.zero_count, h.sum]
            .iter()
            .chain(&h.positive_buckets)
            .chain(&h.negative_buckets)
            .any(|x| x.is_infinite())
    }

    /// The sum, compensations added in.
    pub(crate) fn finish(self) -> FloatHistogram {
        let mut h = self.h;
        h.count += self.c[0];
        h.zero_count += self.c[1];
        h.sum += self.c[2];
        h
    }
}

/// A running mean of histograms: the compensated sum while it stays finite, an incremental
/// mean once it overflows.
#[derive(Debug, Clone)]
pub(crate) struct KahanMean {
    acc: KahanSum,
    n: f64,
    incremental: bool,
}

impl KahanMean {
    /// A mean of the one histogram `h` so far.
    pub(crate) fn new(h: FloatHistogram) -> Self {
        KahanMean {
            acc: KahanSum::new(h),
            n: 1.0,
            incremental: false,
        }
    }

    /// Takes `x` into the mean; true when custom bounds were reconciled.
    pub(crate) fn add(&mut self, x: &FloatHistogram) -> Result<bool, MathError> {
        self.n += 1.0;
        let n = self.n;
        if !self.incremental {
            let mut tried = self.acc.clone();
            let reconciled = tried.add(x)?;
            if !tried.overflowed() {
                self.acc = tried;
                return Ok(reconciled);
            }
            self.incremental = true;
            self.acc.divide(n - 1.0);
        }
        self.acc.scale((n - 1.0) / n);
        let mut step = x.clone();
        step.div(n);
        self.acc.add(&step)
    }

    /// Takes in the mean of later input; true when custom bounds were reconciled.
    pub(crate) fn merge(&mut self, other: KahanMean) -> Result<bool, MathError> {
        if !self.incremental && !other.incremental {
            let mut tried = self.acc.clone();
            let reconciled = tried.merge(other.acc.clone())?;
            if !tried.overflowed() {
                self.acc = tried;
                self.n += other.n;
                return Ok(reconciled);
            }
        }
        // Two means weighed by their counts.
        let n = self.n + other.n;
        let (wa, wb) = (self.n / n, other.n / n);
        let mut a = self.clone().finish();
        let mut b = other.finish();
        a.mul(wa);
        b.mul(wb);
        self.acc = KahanSum::new(a);
        self.n = n;
        self.incremental = true;
        self.acc.add(&b)
    }

    /// The mean.
    pub(crate) fn finish(mut self) -> FloatHistogram {
        if !self.incremental {
            self.acc.divide(self.n);
        }
        self.acc.finish()
    }
}
