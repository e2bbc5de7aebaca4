//! How far a range selector reads past its window `(end - range, end]`: Prometheus 3.14's
//! `anchored` modifier also reads the lookback delta before the window, for the sample at or
//! before its start; `smoothed` reads the lookback delta on both sides, to interpolate at its
//! edges. The selection is widened by as much, each step sees the samples of its widened
//! window (its *span*), and the functions over it pick or interpolate the window's edges.

use std::borrow::Cow;

use crate::functions::range::extended::{extend_floats, for_each_span};
use crate::parser::VectorSelector;

use super::{Loaded, RangeVec};
use crate::error::PromqlError;
use gauntlet_engine::chunk::SampleBatch;
use gauntlet_engine::query::Series;

/// What a range selector reads besides its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RangeReach {
    /// Its window only.
    #[default]
    Window,
    /// `anchored`: also the `lookback` (ms) before the window.
    Anchored { lookback: i64 },
    /// `smoothed`: also the `lookback` (ms) before and after the window.
    Smoothed { lookback: i64 },
}

impl RangeReach {
    /// The reach of range selector `vs` for a query of this lookback delta (ms).
    pub fn of(vs: &VectorSelector, lookback: i64) -> RangeReach {
        if vs.anchored {
            RangeReach::Anchored { lookback }
        } else if vs.smoothed {
            RangeReach::Smoothed { lookback }
        } else {
            RangeReach::Window
        }
    }

    /// Whether the selector reads past its window.
    pub fn is_extended(self) -> bool {
        self != RangeReach::Window
    }

    /// Whether the window's edges are interpolated rather than picked.
    pub fn is_smoothed(self) -> bool {
        matches!(self, RangeReach::Smoothed { .. })
    }

    /// How far (ms) the span starts before the window.
    pub fn before(self) -> i64 {
        match self {
            RangeReach::Window => 0,
            RangeReach::Anchored { lookback } | RangeReach::Smoothed { lookback } => lookback,
        }
    }

    /// How far (ms) the span ends after the window.
    pub fn after(self) -> i64 {
        match self {
            RangeReach::Smoothed { lookback } => lookback,
            _ => 0,
        }
    }

    /// Calls `f(step, lo, hi)` with the index range of each step's span over sorted `ts`:
    /// `(end - range - before, end + after]`.
    pub fn spans(self, ts: &[i64], ends: &[i64], range: i64, f: impl FnMut(usize, usize, usize)) {
        for_each_span(ts, ends, range, self.before(), self.after(), f)
    }

    /// The step ends and range whose windows are this reach's spans, for code that slides
    /// plain windows.
    pub fn span_windows(self, ends: &[i64], range: i64) -> (Cow<'_, [i64]>, i64) {
        if !self.is_extended() {
            return (Cow::Borrowed(ends), range);
        }
        let after = self.after();
        let shifted = ends.iter().map(|e| e.saturating_add(after)).collect();
        (
            Cow::Owned(shifted),
            range.saturating_add(self.before()).saturating_add(after),
        )
    }
}

impl Loaded {
    /// Counts the samples in each step's span of one series, as [`Loaded::count_windows`]
    /// counts windows: what the range functions over an `anchored` or `smoothed` selector see
    /// and Prometheus counts.
    pub fn count_spans(
        &mut self,
        reach: RangeReach,
        fts: &[i64],
        hists: (&[i64], &[gauntlet_engine::histogram::FloatHistogram]),
        ends: &[i64],
        range: i64,
    ) {
        let (ends, range) = reach.span_windows(ends, range);
        self.count_windows(fts, hists, &ends, range);
    }
}

impl RangeVec {
    /// An instant query's `anchored` or `smoothed` range selector as Prometheus answers it: each
    /// series' samples inside the window, with a sample at each of its edges, picked (the one
    /// at or before the edge) or interpolated. Series of native histograms are refused, as
    /// Prometheus refuses them. Also gives the samples the answer holds, which is what
    /// Prometheus counts as loaded.
    pub fn extended_instant(&self) -> Result<(Vec<Series>, u64), PromqlError> {
        let end = self.ends.first().copied().unwrap_or(0);
        let reach = self.reach;
        let mut out = Vec::new();
        let mut loaded = 0u64;
        let one = [end];
        for s in &self.series {
            let mut any_hist = false;
            reach.spans(&s.hts, &one, self.range, |_, lo, hi| any_hist = hi > lo);
            if any_hist {
                let what = if reach.is_smoothed() {
                    "smoothed"
                } else {
                    "anchored"
                };
                return Err(PromqlError::Execution(format!(
                    "{what} modifier is not supported with histograms"
                )));
            }
            let mut span = 0..0;
            reach.spans(&s.ts, &one, self.range, |_, lo, hi| span = lo..hi);
            let (ts, val) = extend_floats(
                &s.ts[span.clone()],
                &s.v[span],
                end.saturating_sub(self.range),
                end,
                reach.is_smoothed(),
            );
            if ts.is_empty() {
                continue;
            }
            loaded += ts.len() as u64;
            out.push(Series::floats(
                if s.drop_name {
                    super::without_name(&s.labels)
                } else {
                    s.labels.clone()
                },
                SampleBatch { ts, val },
            ));
        }
        Ok((out, loaded))
    }
}
