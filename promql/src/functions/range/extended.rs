//! `rate`, `increase`, `delta`, `changes` and `resets` over `anchored` and `smoothed` range
//! selectors, as Prometheus 3.14 computes them. Each step sees the samples of its span (the
//! window and the lookback delta before it, and after it when smoothed; see
//! `eval/reach.rs`):
//!
//! - `anchored` takes the latest sample at or before the window's start as the value there
//!   (the first sample in the window when there is none) and the last sample as the value at
//!   its end: no extrapolation. `changes` and `resets` count from that sample on.
//! - `smoothed` interpolates linearly at both edges between the samples either side of each
//!   (a counter that reset is taken to have restarted from zero), and has no answer when all
//!   samples lie on one side of the window.
//!
//! Counter resets between the two edges are added back as for plain windows.

use super::hist::{incompatible, not_counter, not_gauge};
use super::{F, Notes, RangeCall, advance_past, counter_resets, duration_seconds};
use crate::eval::{HCol, absent};
use crate::hist_math::{self, MathError};

/// `anchored` and `smoothed` are Prometheus 3.14 syntax: their histograms are compared with
/// 3.14's rules whatever `--query.promql-compat` says.
const EXTENDED_COMPAT: crate::Compat = crate::Compat::Prometheus3_14;
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram};

/// Calls `f(step, lo, hi)` with the index range of each step's span over sorted `ts`:
/// `(end - range - before, end + after]`, sliding two indices forward (restarting if an end
/// goes backwards).
pub(crate) fn for_each_span(
    ts: &[i64],
    ends: &[i64],
    range: i64,
    before: i64,
    after: i64,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (mut lo, mut hi, mut lo_move, mut hi_move) = (0usize, 0usize, 0usize, 0usize);
    let mut prev = i64::MIN;
    for (i, &end) in ends.iter().enumerate() {
        if end < prev {
            (lo, hi) = (0, 0);
        }
        prev = end;
        let start = end.saturating_sub(range).saturating_sub(before);
        hi = advance_past(ts, hi, end.saturating_add(after), &mut hi_move);
        lo = advance_past(ts, lo, start, &mut lo_move).min(hi);
        f(i, lo, hi);
    }
}

/// The value at `t` on the line between `(t1, y1)` and `(t2, y2)`, in Prometheus's order of
/// operations; for a counter that fell, the line starts from zero (it reset in between).
pub(crate) fn interpolate(
    (t1, y1): (i64, f64),
    (t2, y2): (i64, f64),
    t: i64,
    counter: bool,
) -> f64 {
    let y1 = if counter && y2 < y1 { 0.0 } else { y1 };
    y1 + (y2 - y1) * (t - t1) as f64 / (t2 - t1) as f64
}

/// The histogram at `t` between `h1` (at `t1`) and `h2` (at `t2`): `h1 + (h2 - h1) * fraction`,
/// or for a counter that reset in between `h2 * fraction`; at either end a copy of that end.
pub(crate) fn interpolate_histogram(
    (t1, h1): (i64, &FloatHistogram),
    (t2, h2): (i64, &FloatHistogram),
    t: i64,
    counter: bool,
) -> Result<FloatHistogram, MathError> {
    if t == t1 {
        return Ok(h1.clone());
    }
    if t == t2 {
        return Ok(h2.clone());
    }
    let fraction = (t - t1) as f64 / (t2 - t1) as f64;
    let mut r = h2.clone();
    if counter && hist_math::detect_reset(h2, h1, EXTENDED_COMPAT) {
        r.mul(fraction);
        return Ok(r);
    }
    r.sub(h1)?;
    r.mul(fraction);
    r.add(h1)?;
    Ok(r)
}

/// The samples a span's window edges are taken from: `first` is the latest sample at or
/// before the window's start (or the span's first sample), `last` the span's last sample, or
/// when smoothed the first at or after the window's end.
struct Edges {
    first: usize,
    last: usize,
}

impl Edges {
    /// The edges of the window `(start, end]` over the span's sorted times `ts`; `None` when no
    /// sample lies after the start.
    fn find(ts: &[i64], start: i64, end: i64, smoothed: bool) -> Option<Edges> {
        let mut last = ts.len().checked_sub(1)?;
        // As Prometheus searches: among all samples but the last.
        let first = ts[..last]
            .partition_point(|&t| t <= start)
            .saturating_sub(1);
        if smoothed {
            last = ts[..last].partition_point(|&t| t < end);
        }
        (ts[last] > start).then_some(Edges { first, last })
    }

    /// The samples strictly inside the window (edge samples on or past its edges are the
    /// edges' own), possibly none.
    fn inner(&self, ts: &[i64], start: i64, end: i64) -> std::ops::Range<usize> {
        let a = self.first + usize::from(ts[self.first] <= start);
        let b = self.last + 1 - usize::from(ts[self.last] >= end);
        a..b.max(a)
    }

    /// The values at the window's start and end: the edge samples' own, or when smoothed and
    /// they lie outside the window, interpolated (as a counter when `counter`).
    fn values(
        &self,
        (ts, vs): (&[i64], &[f64]),
        (start, end): (i64, i64),
        smoothed: bool,
        counter: bool,
    ) -> (f64, f64) {
        let (first, last) = (self.first, self.last);
        let at = |k: usize| (ts[k], vs[k]);
        let left = if smoothed && ts[first] < start {
            interpolate(at(first), at(first + 1), start, counter)
        } else {
            vs[first]
        };
        let right = if smoothed && last > 0 && ts[last] > end {
            interpolate(at(last - 1), at(last), end, counter)
        } else {
            vs[last]
        };
        (left, right)
    }
}

/// An `anchored` or `smoothed` range selector's samples as an instant query answers it:
/// a sample at the window's start `start` (picked or interpolated), the samples inside the
/// window, and one at its end `end`. `ts`/`vs` are the samples of the span.
pub(crate) fn extend_floats(
    ts: &[i64],
    vs: &[f64],
    start: i64,
    end: i64,
    smoothed: bool,
) -> (Vec<i64>, Vec<f64>) {
    let Some(edges) = Edges::find(ts, start, end, smoothed) else {
        return (Vec::new(), Vec::new());
    };
    let (left, right) = edges.values((ts, vs), (start, end), smoothed, false);
    let inner = edges.inner(ts, start, end);
    let mut out_t = Vec::with_capacity(inner.len() + 2);
    let mut out_v = Vec::with_capacity(inner.len() + 2);
    out_t.push(start);
    out_v.push(left);
    out_t.extend_from_slice(&ts[inner.clone()]);
    out_v.extend_from_slice(&vs[inner]);
    out_t.push(end);
    out_v.push(right);
    (out_t, out_v)
}

/// One sample of a span, float or histogram.
#[derive(Clone, Copy)]
enum Sample<'a> {
    Float(f64),
    Hist(&'a FloatHistogram),
}

impl RangeCall {
    /// [`RangeCall::column`] over an `anchored` or `smoothed` selector: `ts`/`vs` hold the
    /// floats of every step's span.
    pub(super) fn extended_column(
        &self,
        ts: &[i64],
        vs: &[f64],
        ends: &[i64],
        range: i64,
        out: &mut [f64],
    ) {
        let smoothed = self.reach.is_smoothed();
        let counter = matches!(self.f, F::Rate | F::Increase);
        let resets = if counter {
            counter_resets(vs)
        } else {
            Vec::new()
        };
        self.reach.spans(ts, ends, range, |i, lo, hi| {
            if hi <= lo {
                return;
            }
            let (start, end) = (ends[i].saturating_sub(range), ends[i]);
            let r = match self.f {
                F::Rate | F::Increase | F::Delta => {
                    extended_rate(ts, vs, &resets, lo..hi, (start, end), smoothed, counter).map(
                        |x| {
                            if self.f == F::Rate {
                                x / duration_seconds(range)
                            } else {
                                x
                            }
                        },
                    )
                }
                F::Changes | F::Resets => {
                    self.anchored_count((&ts[lo..hi], &vs[lo..hi]), (&[], &[]), start)
                }
                // The parser and `modifiers::check` let no other function read these selectors.
                _ => None,
            };
            if let Some(x) = r {
                out[i] = x;
            }
        });
    }

    /// [`RangeCall::hist_column`] over an `anchored` or `smoothed` selector: the steps whose
    /// span holds histograms are worked out here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn extended_hist_column(
        &self,
        name: &str,
        (fts, fvs): (&[i64], &[f64]),
        (hts, hs): (&[i64], &[FloatHistogram]),
        ends: &[i64],
        range: i64,
        v: &mut [f64],
        notes: &mut Notes,
    ) -> Option<HCol> {
        let n = v.len();
        let mut fspan = vec![(0usize, 0usize); n];
        self.reach
            .spans(fts, ends, range, |i, lo, hi| fspan[i] = (lo, hi));
        let mut out: HCol = vec![None; n];
        self.reach.spans(hts, ends, range, |i, hlo, hhi| {
            if hhi <= hlo {
                return;
            }
            let (flo, fhi) = fspan[i];
            let (start, end) = (ends[i].saturating_sub(range), ends[i]);
            let (hts, hs) = (&hts[hlo..hhi], &hs[hlo..hhi]);
            match self.f {
                F::Rate | F::Increase | F::Delta => {
                    v[i] = absent();
                    if fhi > flo {
                        notes.warn(format!(
                            "PromQL warning: encountered a mix of histograms and floats for metric name {name:?}{}",
                            self.first_at
                        ));
                        return;
                    }
                    out[i] = self.extended_hist_rate(hts, hs, (start, end), range, name, notes);
                }
                F::Changes | F::Resets => {
                    let floats = (&fts[flo..fhi], &fvs[flo..fhi]);
                    v[i] = self
                        .anchored_count(floats, (hts, hs), start)
                        .unwrap_or(absent());
                }
                _ => {}
            }
        });
        out.iter().any(|x| x.is_some()).then_some(out)
    }

    /// `changes` or `resets` over an anchored span of floats and histograms: from the latest
    /// sample (of either kind) at or before the window's start `start` on, or over all of
    /// them when there is none. `None` when no sample lies after the start. A float next to a
    /// histogram counts as a change and as a reset.
    fn anchored_count(
        &self,
        (fts, fvs): (&[i64], &[f64]),
        (hts, hs): (&[i64], &[FloatHistogram]),
        start: i64,
    ) -> Option<f64> {
        // How many samples of each kind lie at or before the start.
        let fk = fts.partition_point(|&t| t <= start);
        let hk = hts.partition_point(|&t| t <= start);
        if fk >= fts.len() && hk >= hts.len() {
            return None;
        }
        // The anchor is the later of the two kinds' last samples at or before the start; the
        // other kind's samples before it are left out.
        let (mut i, mut j) = match (fk.checked_sub(1), hk.checked_sub(1)) {
            (None, None) => (0, 0),
            (Some(f), None) => (f, hk),
            (Some(f), Some(h)) if fts[f] >= hts[h] => (f, hk),
            _ => (fk, hk - 1),
        };
        let mut prev: Option<Sample<'_>> = None;
        let mut count = 0usize;
        while i < fts.len() || j < hts.len() {
            let cur = if j >= hts.len() || (i < fts.len() && fts[i] <= hts[j]) {
                i += 1;
                Sample::Float(fvs[i - 1])
            } else {
                j += 1;
                Sample::Hist(&hs[j - 1])
            };
            if let Some(p) = prev {
                let hit = match (p, cur) {
                    (Sample::Float(a), Sample::Float(b)) => {
                        if self.f == F::Resets {
                            b < a
                        } else {
                            !(a == b || (a.is_nan() && b.is_nan()))
                        }
                    }
                    (Sample::Hist(a), Sample::Hist(b)) => {
                        if self.f == F::Resets {
                            hist_math::detect_reset(b, a, EXTENDED_COMPAT)
                        } else {
                            !hist_math::equals(a, b)
                        }
                    }
                    _ => true,
                };
                count += usize::from(hit);
            }
            prev = Some(cur);
        }
        Some(count as f64)
    }

    /// `rate`, `increase` or `delta` over an anchored or smoothed span of histograms `ts`/`hs`,
    /// for the window `(start, end]` of length `range` (ms). Annotations as Prometheus gives
    /// them: not a counter (a gauge sample between the edges), not a gauge (`delta` with an
    /// edge that is not), incompatible layouts (no answer).
    fn extended_hist_rate(
        &self,
        ts: &[i64],
        hs: &[FloatHistogram],
        (start, end): (i64, i64),
        range: i64,
        name: &str,
        notes: &mut Notes,
    ) -> Option<FloatHistogram> {
        let smoothed = self.reach.is_smoothed();
        let counter = self.f != F::Delta;
        let Edges { first, last } = Edges::find(ts, start, end, smoothed)?;
        if smoothed && ts[first] > end {
            return None;
        }
        let custom = hs[first].uses_custom_buckets();
        for h in &hs[first..=last] {
            if h.uses_custom_buckets() != custom {
                notes.warn(incompatible(MathError::MixedSchemas, name, &self.first_at));
                return None;
            }
            if counter && h.counter_reset_hint == CounterResetHint::Gauge {
                notes.warn(not_counter(name, &self.first_at));
            }
        }
        let fail = |notes: &mut Notes, e: MathError| {
            notes.warn(incompatible(e, name, &self.first_at));
        };
        let at = |k: usize| (ts[k], &hs[k]);
        let left = if smoothed && ts[first] < start {
            interpolate_histogram(at(first), at(first + 1), start, counter)
        } else {
            Ok(hs[first].clone())
        };
        let right = if smoothed && last > 0 && ts[last] > end {
            interpolate_histogram(at(last - 1), at(last), end, counter)
        } else {
            Ok(hs[last].clone())
        };
        let (left, right) = match (left, right) {
            (Ok(l), Ok(r)) => (l, r),
            (Err(e), _) | (_, Err(e)) => {
                fail(notes, e);
                return None;
            }
        };
        let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
        if !counter && (!gauge(&left) || !gauge(&right)) {
            notes.warn(not_gauge(name, &self.first_at));
        }
        let mut result = right.clone();
        if let Err(e) = result.sub(&left) {
            fail(notes, e.into());
            return None;
        }
        if counter {
            let correction =
                match reset_correction(ts, hs, (first, last), (&left, &right), start, smoothed) {
                    Ok(c) => c,
                    Err(e) => {
                        fail(notes, e);
                        return None;
                    }
                };
            if let Some(c) = correction
                && let Err(e) = result.add(&c)
            {
                fail(notes, e.into());
                return None;
            }
        }
        if self.f == F::Rate {
            result.div(duration_seconds(range));
        }
        result.counter_reset_hint = CounterResetHint::Gauge;
        let _ = result.compact(0);
        Some(result)
    }
}

/// The sum of a float counter's values before each reset between the window's edges:
/// `left` and `right` are the values taken at the edges, `inner` the samples strictly between
/// them (indices into `vs`, possibly none) and `resets` the series' counter resets
/// ([`counter_resets`]).
fn float_correction(
    vs: &[f64],
    resets: &[usize],
    inner: std::ops::Range<usize>,
    (left, right): (f64, f64),
) -> f64 {
    let mut correction = 0.0;
    let mut prev = left;
    if !inner.is_empty() {
        let (a, b) = (inner.start, inner.end - 1);
        if vs[a] < prev {
            correction += prev;
        }
        // The resets at `a + 1 ..= b`, in order.
        let from = resets.partition_point(|&j| j <= a);
        let to = resets.partition_point(|&j| j <= b);
        for &j in &resets[from..to] {
            correction += vs[j - 1];
        }
        prev = vs[b];
    }
    if right < prev {
        correction += prev;
    }
    correction
}

/// `rate`'s (before the division), `increase`'s or `delta`'s value over the span `lo..hi` of
/// float samples `ts`/`vs` for the window `(start, end]`; `resets` are the series' counter
/// resets ([`counter_resets`]), used when `counter`.
fn extended_rate(
    ts: &[i64],
    vs: &[f64],
    resets: &[usize],
    span: std::ops::Range<usize>,
    (start, end): (i64, i64),
    smoothed: bool,
    counter: bool,
) -> Option<f64> {
    let lo = span.start;
    let (t, v) = (&ts[span.clone()], &vs[span]);
    let edges = Edges::find(t, start, end, smoothed)?;
    if smoothed && t[edges.first] > end {
        return None;
    }
    let (left, right) = edges.values((t, v), (start, end), smoothed, counter);
    let mut result = right - left;
    if counter {
        // Only the samples strictly inside the window are checked for resets: the edges
        // already account for those across them.
        let inner = edges.inner(t, start, end);
        result += float_correction(vs, resets, lo + inner.start..lo + inner.end, (left, right));
    }
    Some(result)
}

/// The sum of a histogram counter's samples before each reset between the window's edges:
/// `first`/`last` are the samples the edges `left`/`right` were taken from. When the left edge
/// was interpolated across a reset, that reset is already in it. `None` when there is nothing
/// to add.
fn reset_correction(
    ts: &[i64],
    hs: &[FloatHistogram],
    (first, last): (usize, usize),
    (left, right): (&FloatHistogram, &FloatHistogram),
    start: i64,
    smoothed: bool,
) -> Result<Option<FloatHistogram>, MathError> {
    let mut from = first + 1;
    let mut prev = left;
    if smoothed
        && ts[first] < start
        && hist_math::detect_reset(&hs[first + 1], &hs[first], EXTENDED_COMPAT)
    {
        prev = &hs[first + 1];
        from += 1;
    }
    // The last sample is the right edge (or what it was interpolated towards): it is compared
    // as the right edge only.
    if from > last {
        return Ok(None);
    }
    let mut correction: Option<FloatHistogram> = None;
    let mut add = |h: &FloatHistogram| -> Result<(), MathError> {
        match correction.as_mut() {
            None => correction = Some(h.clone()),
            Some(c) => {
                c.add(h)?;
            }
        }
        Ok(())
    };
    for h in &hs[from..last] {
        if hist_math::detect_reset(h, prev, EXTENDED_COMPAT) {
            add(prev)?;
        }
        prev = h;
    }
    if hist_math::detect_reset(right, prev, EXTENDED_COMPAT) {
        add(prev)?;
    }
    Ok(correction)
}
