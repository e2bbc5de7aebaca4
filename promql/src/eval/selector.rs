//! Instant and range selectors: each series is fetched once for the whole query range, then
//! every step picks its sample (lookback) or its window from the one column. Instant
//! selectors stream (see `stream.rs`); range selectors that are not a range function's
//! argument are materialized.

use std::sync::Arc;

use crate::parser::{MatchOp, MatrixSelector, VectorSelector};

use super::{Col, Evaluator, RSeries, RangeReach, RangeVec, Steps};
use crate::error::PromqlError;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::chunk::{HistogramBatch, SampleBatch, is_stale_nan};
use gauntlet_engine::labels::{MatchType, Matcher};
use gauntlet_engine::query::{
    DecodeScratch, SelectHints, Series, decode_histograms, decode_series,
};

impl Evaluator<'_> {
    /// Fetches the series `vs` selects with samples in `[mint, maxt]` (ms), decoded, each
    /// counted as held.
    pub(crate) fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>, PromqlError> {
        let stats_hints = self.stats_selectors.contains(vs);
        let bucket_free = self.bucket_free.contains(vs);
        let mut stream = self.open_stream(vs, mint, maxt, hints)?;
        let mut out = Vec::new();
        let mut scratch = DecodeScratch::default();
        while let Some(batch) = stream.next_batch()? {
            self.check_deadline("query execution")?;
            for s in batch {
                let mut samples = SampleBatch::new();
                decode_series(&s, mint, maxt, &mut scratch, &mut samples)?;
                let mut histograms = HistogramBatch::new();
                if s.data.has_histograms() {
                    let whole = !bucket_free
                        || !super::histogram_stats::decode_bucket_free(
                            &s,
                            (mint, maxt),
                            self.opts.compat,
                            &mut histograms,
                        );
                    if whole {
                        decode_histograms(&s, mint, maxt, &mut histograms)?;
                        if stats_hints {
                            super::histogram_stats::assign_reset_hints(
                                &mut histograms,
                                self.opts.compat,
                            );
                        }
                    }
                }
                let s = Series {
                    labels: s.labels,
                    samples,
                    histograms,
                };
                if !s.is_empty() {
                    self.acquire(s.samples.len() + s.histograms.len())?;
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Evaluates an instant selector: at each step the latest sample in
    /// `(t - lookback, t]`, none when that sample is a stale marker. With `want_ts` the value
    /// is the sample's timestamp in seconds (for `timestamp()`).
    pub(crate) fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        steps: &Steps,
        want_ts: bool,
    ) -> Result<Vec<Col>, PromqlError> {
        let kernel = self.instant_kernel(vs, steps, want_ts);
        if self.materialize {
            let (mint, maxt, hints) = kernel.span();
            let hints = hints.clone();
            let series = self.select(vs, mint, maxt, &hints)?;
            let mut warnings = Vec::new();
            let cols: Vec<Col> = series
                .into_iter()
                .filter_map(|s| kernel.instant_col(s, &mut warnings))
                .collect();
            warnings.into_iter().for_each(|w| self.warn(w));
            // Prometheus counts no samples loaded for a smoothed selector.
            if !vs.smoothed || want_ts {
                for c in &cols {
                    self.loaded.count_col(&c.v, c.h.as_ref());
                }
            }
            return Ok(cols);
        }
        self.collect_columns(vs, &kernel)
    }

    /// A range selector's length (ms), its window end at each step, and the span `[mint, maxt]`
    /// its windows `(t - range, t]` cover together, widened by what an `anchored` or
    /// `smoothed` selector reads past them.
    pub(crate) fn range_span(
        &self,
        ms: &MatrixSelector,
        steps: &Steps,
    ) -> (i64, Vec<i64>, i64, i64) {
        let range = self.duration_ms(&ms.range);
        let ends = self.selector_times(&ms.selector, steps);
        let reach = RangeReach::of(&ms.selector, self.opts.lookback_delta_ms);
        let mint = ends
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .saturating_sub(range)
            .saturating_sub(reach.before())
            .saturating_add(1);
        let maxt = ends
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .saturating_add(reach.after());
        (range, ends, mint, maxt)
    }

    /// Evaluates a range selector: each series' samples over all windows (or spans), stale
    /// markers removed; windows are `(t - range, t]` (Prometheus 3).
    pub(crate) fn matrix_selector(
        &mut self,
        ms: &MatrixSelector,
        steps: &Steps,
    ) -> Result<RangeVec, PromqlError> {
        let (range, ends, mint, maxt) = self.range_span(ms, steps);
        let hints = SelectHints {
            step_ms: steps.step,
            func: self.select_funcs.of(&ms.selector),
            range_ms: range,
            grouping: None,
            cancel: self.opts.cancel.clone(),
        };
        let series = self.select(&ms.selector, mint, maxt, &hints)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let mut ts = s.samples.ts;
            let mut v = s.samples.val;
            if v.iter().any(|x| is_stale_nan(*x)) {
                let mut k = 0;
                for j in 0..ts.len() {
                    if !is_stale_nan(v[j]) {
                        ts[k] = ts[j];
                        v[k] = v[j];
                        k += 1;
                    }
                }
                ts.truncate(k);
                v.truncate(k);
            }
            let (mut hts, mut h) = (s.histograms.ts, s.histograms.h);
            if h.iter().any(|x| x.is_stale()) {
                let keep: Vec<bool> = h.iter().map(|x| !x.is_stale()).collect();
                let mut k = keep.iter();
                hts.retain(|_| k.next() == Some(&true));
                let mut k = keep.iter();
                h.retain(|_| k.next() == Some(&true));
            }
            if !ts.is_empty() || !hts.is_empty() {
                out.push(RSeries {
                    labels: s.labels,
                    drop_name: false,
                    ts,
                    v,
                    hts,
                    h,
                });
            }
        }
        Ok(RangeVec {
            series: out,
            range,
            ends,
            reach: RangeReach::of(&ms.selector, self.opts.lookback_delta_ms),
        })
    }
}

/// The matchers of a selector, the metric name's included: first when the name is written
/// before the braces (the parser lists it last). Their regexes hold room in `budget` when
/// there is one (a query's).
pub(crate) fn selector_matchers(
    vs: &VectorSelector,
    budget: Option<&Arc<MemoryBudget>>,
) -> Result<Vec<Matcher>, PromqlError> {
    let mut ms = vs
        .matchers
        .iter()
        .map(|m| convert_matcher(m, budget))
        .collect::<Result<Vec<_>, _>>()?;
    if vs.name.is_some() {
        ms.rotate_right(1);
    }
    Ok(ms)
}

/// The parser's matcher as Gauntlet's (anchored regexes, same semantics). The parser checked
/// each regex as this compiles it, so an error here is a pattern it was not asked to check.
/// The regex holds room in `budget` when there is one.
pub(crate) fn convert_matcher(
    m: &crate::parser::Matcher,
    budget: Option<&Arc<MemoryBudget>>,
) -> Result<Matcher, PromqlError> {
    let typ = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::Regex => MatchType::Regexp,
        MatchOp::NotRegex => MatchType::NotRegexp,
    };
    match budget {
        Some(b) => Matcher::new_in(b, typ, m.name.clone(), m.value.clone()),
        None => Matcher::new(typ, m.name.clone(), m.value.clone()),
    }
    .map_err(|e| PromqlError::Parse(e.to_string()))
}
