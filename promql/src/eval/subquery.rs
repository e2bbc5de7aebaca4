//! Subqueries: the inner expression is evaluated once over the union of every outer step's
//! window, at timestamps aligned to the subquery step, and becomes a range vector.

use crate::parser::SubqueryExpr;

use super::{Evaluator, RSeries, RangeReach, RangeVec, Steps, Val, is_absent};
use crate::error::PromqlError;
use gauntlet_engine::histogram::CounterResetHint;

/// Prometheus's default subquery resolution when none is given (its evaluation interval), ms.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

impl Evaluator<'_> {
    /// Evaluates a subquery; also returns the samples its inner expression loaded, which
    /// only a subquery that is the whole query counts (a range function over one counts the
    /// results in its windows instead).
    pub(crate) fn subquery(
        &mut self,
        sq: &SubqueryExpr,
        steps: &Steps,
    ) -> Result<(RangeVec, u64), PromqlError> {
        let off = self.offset_ms(&sq.offset);
        let range = self.duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(|d| self.duration_ms(d))
            .filter(|&s| s > 0)
            .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let ends: Vec<i64> = match self.at_time(&sq.at) {
            Some(at) => vec![at.saturating_sub(off); steps.n],
            None => (0..steps.n)
                .map(|i| steps.t(i).saturating_sub(off))
                .collect(),
        };
        let first = ends.iter().copied().min().unwrap_or(0);
        let last = ends.iter().copied().max().unwrap_or(0);
        // The first aligned timestamp after the earliest window start; Go's integer division
        // truncates toward zero, and so does Rust's.
        let lo = first.saturating_sub(range);
        let mut start = step.saturating_mul(lo / step);
        if start <= lo {
            start = start.saturating_add(step);
        }
        let n = if last >= start {
            (last.saturating_sub(start) / step) as usize + 1
        } else {
            0
        };
        if n > self.opts.max_samples {
            return Err(PromqlError::TooManySamples("subquery evaluation"));
        }
        let inner = Steps { start, step, n };
        // The inner expression's steps are not the query's: its loads are counted apart.
        let outer = std::mem::take(&mut self.loaded);
        let val = if n == 0 {
            None
        } else {
            Some(self.eval(&sq.expr, &inner))
        };
        let loaded = std::mem::replace(&mut self.loaded, outer).total;
        let series = match val.transpose()? {
            None => Vec::new(),
            Some(val) => match val {
                Val::Vector(cols) => cols
                    .into_iter()
                    .filter_map(|c| {
                        let mut ts = Vec::new();
                        let mut v = Vec::new();
                        for (i, &x) in c.v.iter().enumerate() {
                            if !is_absent(x) {
                                ts.push(inner.t(i));
                                v.push(x);
                            }
                        }
                        let (mut hts, mut h) = (Vec::new(), Vec::new());
                        for (i, x) in c.h.into_iter().flatten().enumerate() {
                            if let Some(mut x) = x {
                                // A subquery may repeat a sample or skip the one a counter
                                // reset is marked on: its counter histograms' resets are
                                // told from their counts again.
                                if x.counter_reset_hint != CounterResetHint::Gauge {
                                    x.counter_reset_hint = CounterResetHint::Unknown;
                                }
                                hts.push(inner.t(i));
                                h.push(x);
                            }
                        }
                        (!ts.is_empty() || !hts.is_empty()).then_some(RSeries {
                            hts,
                            h,
                            labels: c.labels,
                            drop_name: c.drop_name,
                            ts,
                            v,
                        })
                    })
                    .collect(),
                Val::Scalar(vals) => vec![RSeries {
                    hts: Vec::new(),
                    h: Vec::new(),
                    labels: gauntlet_engine::labels::Labels::empty(),
                    drop_name: false,
                    ts: (0..n).map(|i| inner.t(i)).collect(),
                    v: vals,
                }],
                other => {
                    return Err(PromqlError::Execution(format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        other.type_name()
                    )));
                }
            },
        };
        Ok((
            RangeVec {
                series,
                range,
                ends,
                reach: RangeReach::Window,
            },
            loaded,
        ))
    }
}
