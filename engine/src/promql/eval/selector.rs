//! Instant and range selectors: each series is fetched once for the whole query range, then
//! every step picks its sample (lookback) or its window from the one column.

use promql_parser::label::MatchOp;
use promql_parser::parser::{MatrixSelector, VectorSelector};

use super::{Col, Evaluator, RSeries, RangeVec, Steps, absent, offset_ms};
use crate::chunk::is_stale_nan;
use crate::labels::{MatchType, Matcher};
use crate::promql::error::PromqlError;
use crate::query::{SelectHints, Series};

impl Evaluator<'_> {
    /// Each step's evaluation time for a selector: the `@` time or the step, minus the offset.
    fn selector_times(&self, vs: &VectorSelector, steps: &Steps) -> Vec<i64> {
        let off = offset_ms(&vs.offset);
        match self.at_time(&vs.at) {
            Some(at) => vec![at.saturating_sub(off); steps.n],
            None => (0..steps.n)
                .map(|i| steps.t(i).saturating_sub(off))
                .collect(),
        }
    }

    /// Fetches the series `vs` selects with samples in `[mint, maxt]` (ms).
    pub(crate) fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>, PromqlError> {
        let mut groups = vec![vs.matchers.matchers.clone()];
        groups.extend(vs.matchers.or_matchers.iter().cloned());
        let mut out: Vec<Series> = Vec::new();
        for group in &groups {
            let mut ms = Vec::with_capacity(group.len() + 1);
            if let Some(name) = &vs.name {
                ms.push(Matcher::equal("__name__", name.clone()));
            }
            for m in group {
                ms.push(convert_matcher(m)?);
            }
            let got = self.storage.select(&ms, mint, maxt, hints)?;
            let n: usize = got.iter().map(|s| s.samples.ts.len()).sum();
            self.add_samples(n, "query execution")?;
            out.extend(got);
        }
        if groups.len() > 1 {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            out.dedup_by(|a, b| a.labels == b.labels);
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
        let times = self.selector_times(vs, steps);
        let lookback = self.opts.lookback_delta_ms;
        let mint = times
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .saturating_sub(lookback)
            .saturating_add(1);
        let maxt = times.iter().copied().max().unwrap_or(0);
        let hints = SelectHints {
            step_ms: steps.step,
            func: None,
            range_ms: 0,
        };
        let series = self.select(vs, mint, maxt, &hints)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let (ts, vals) = (&s.samples.ts, &s.samples.val);
            let mut col = vec![absent(); steps.n];
            let mut any = false;
            let mut hi = 0usize;
            let mut prev = i64::MIN;
            for (i, &t) in times.iter().enumerate() {
                if t < prev {
                    hi = 0;
                }
                prev = t;
                while hi < ts.len() && ts[hi] <= t {
                    hi += 1;
                }
                if hi == 0 {
                    continue;
                }
                let j = hi - 1;
                if ts[j] <= t.saturating_sub(lookback) || is_stale_nan(vals[j]) {
                    continue;
                }
                col[i] = if want_ts {
                    ts[j] as f64 / 1000.0
                } else {
                    vals[j]
                };
                any = true;
            }
            if any {
                out.push(Col {
                    labels: s.labels,
                    drop_name: false,
                    v: col,
                });
            }
        }
        self.add_samples(out.len() * steps.n, "query execution")?;
        Ok(out)
    }

    /// Evaluates a range selector: each series' samples over all windows, stale markers
    /// removed; windows are `(t - range, t]` (Prometheus 3).
    pub(crate) fn matrix_selector(
        &mut self,
        ms: &MatrixSelector,
        steps: &Steps,
    ) -> Result<RangeVec, PromqlError> {
        let range = ms.range.as_millis() as i64;
        let ends = self.selector_times(&ms.vs, steps);
        let mint = ends
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .saturating_sub(range)
            .saturating_add(1);
        let maxt = ends.iter().copied().max().unwrap_or(0);
        let hints = SelectHints {
            step_ms: steps.step,
            func: None,
            range_ms: range,
        };
        let series = self.select(&ms.vs, mint, maxt, &hints)?;
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
            if !ts.is_empty() {
                out.push(RSeries {
                    labels: s.labels,
                    drop_name: false,
                    ts,
                    v,
                });
            }
        }
        Ok(RangeVec {
            series: out,
            range,
            ends,
        })
    }
}

/// The matchers of a selector's main group, the metric name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, PromqlError> {
    let mut ms = Vec::new();
    if let Some(name) = &vs.name {
        ms.push(Matcher::equal("__name__", name.clone()));
    }
    for m in &vs.matchers.matchers {
        ms.push(convert_matcher(m)?);
    }
    Ok(ms)
}

/// The parser's matcher as Gauntlet's (anchored regexes, same semantics).
fn convert_matcher(m: &promql_parser::label::Matcher) -> Result<Matcher, PromqlError> {
    let typ = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::Re(_) => MatchType::Regexp,
        MatchOp::NotRe(_) => MatchType::NotRegexp,
    };
    match Matcher::new(typ, m.name.clone(), m.value.clone()) {
        Ok(x) => Ok(x),
        Err(e) => match &m.op {
            // Go's regexp takes a literal `{` that Rust's rejects; the parser escaped it.
            MatchOp::Re(re) | MatchOp::NotRe(re) => {
                Matcher::new(typ, m.name.clone(), re.as_str().to_string())
                    .map_err(|_| PromqlError::Parse(e.to_string()))
            }
            _ => Err(PromqlError::Parse(e.to_string())),
        },
    }
}
