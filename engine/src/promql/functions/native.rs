//! Native histogram statistics used by PromQL functions.

use crate::histogram::FloatHistogram;

/// The estimated variance of the observations in `h`.
pub(crate) fn stdvar(h: &FloatHistogram) -> f64 {
    crate::histogram::histogram_stdvar(h)
}
