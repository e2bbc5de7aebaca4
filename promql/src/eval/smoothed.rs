//! A `smoothed` instant selector (Prometheus 3.14): at each step the series' value on the line
//! between its samples either side of the step's time, looking as far as the lookback delta
//! both ways. A sample at the time itself is taken as it is; past the last sample the last
//! value is held; before the first there is none. Floats interpolate as gauges, histograms as
//! counters unless both samples are gauges.

use super::HCol;
use crate::functions::range::extended::{for_each_span, interpolate, interpolate_histogram};
use crate::hist_math::{MathError, incompatible_warning};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram};

/// Fills `out[i]` with the smoothed value of one series at `times[i]`, from its floats
/// `fts`/`fvs` and histograms `hts`/`hs` (each sorted, stale markers removed), and returns the
/// histogram values (`None` when there are none). A step whose samples within the lookback
/// `lookback` (ms) mix floats and histograms, or exponential and custom buckets, has no value
/// and a warning, which names metric `name` and ends with `at` (the selector's position).
#[allow(clippy::too_many_arguments)]
pub(crate) fn smoothed_column(
    (fts, fvs): (&[i64], &[f64]),
    (hts, hs): (&[i64], &[FloatHistogram]),
    times: &[i64],
    lookback: i64,
    name: &str,
    at: &str,
    out: &mut [f64],
    warnings: &mut Vec<String>,
) -> Option<HCol> {
    let mut warn = |w: String| {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    };
    let n = out.len();
    let mut hspan = vec![(0usize, 0usize); if hts.is_empty() { 0 } else { n }];
    if !hts.is_empty() {
        for_each_span(hts, times, 0, lookback, lookback, |i, lo, hi| {
            hspan[i] = (lo, hi)
        });
    }
    let mut h: HCol = Vec::new();
    for_each_span(fts, times, 0, lookback, lookback, |i, lo, hi| {
        let t = times[i];
        let (hlo, hhi) = hspan.get(i).copied().unwrap_or((0, 0));
        if hhi > hlo {
            if hi > lo {
                warn(format!(
                    "PromQL warning: encountered a mix of histograms and floats for metric name {name:?}{at}"
                ));
                return;
            }
            let (ts, hs) = (&hts[hlo..hhi], &hs[hlo..hhi]);
            let k = ts.partition_point(|&x| x < t);
            let value = if k < ts.len() && ts[k] == t {
                hs[k].clone()
            } else if k > 0 && k < ts.len() {
                let (prev, next) = (&hs[k - 1], &hs[k]);
                if prev.uses_custom_buckets() != next.uses_custom_buckets() {
                    warn(incompatible_warning(MathError::MixedSchemas, name, at));
                    return;
                }
                let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
                let counter = !gauge(prev) || !gauge(next);
                match interpolate_histogram((ts[k - 1], prev), (ts[k], next), t, counter) {
                    Ok(x) => x,
                    Err(e) => {
                        warn(incompatible_warning(e, name, at));
                        return;
                    }
                }
            } else if k > 0 {
                // The hint tells how a sample follows the one before; a value held past the
                // last sample follows nothing.
                let mut x = hs[k - 1].clone();
                x.counter_reset_hint = CounterResetHint::Unknown;
                x
            } else {
                return;
            };
            if h.is_empty() {
                h = vec![None; n];
            }
            h[i] = Some(value);
            return;
        }
        if hi <= lo {
            return;
        }
        let (ts, vs) = (&fts[lo..hi], &fvs[lo..hi]);
        let k = ts.partition_point(|&x| x < t);
        if k < ts.len() && ts[k] == t {
            out[i] = vs[k];
        } else if k > 0 && k < ts.len() {
            out[i] = interpolate((ts[k - 1], vs[k - 1]), (ts[k], vs[k]), t, false);
        } else if k > 0 {
            out[i] = vs[k - 1];
        }
    });
    (!h.is_empty()).then_some(h)
}
