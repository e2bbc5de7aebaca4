//! Native histogram statistics used by PromQL functions.

use gauntlet_engine::histogram::FloatHistogram;

/// The estimated variance of the observations in `h`.
pub(crate) fn stdvar(h: &FloatHistogram) -> f64 {
    gauntlet_engine::histogram::histogram_stdvar(h)
}
