//! Range functions over series that hold native histograms. Steps whose window has floats
//! only keep the float kernel's answer; the others are worked out here, sample by sample, as
//! Prometheus 3.5 does, or as 3.14 does under that compatibility (custom bounds reconciled,
//! compensated sums, extrapolation stopped where the count reaches zero).

use super::{F, RangeCall, for_each_window, instant_delta};
use crate::eval::{HCol, absent};
use crate::hist_math;
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram};

/// Annotations a histogram window can owe.
#[derive(Default)]
pub(crate) struct Notes {
    pub warnings: Vec<String>,
    pub info: Vec<String>,
}

impl Notes {
    pub(super) fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    fn info(&mut self, msg: String) {
        if !self.info.contains(&msg) {
            self.info.push(msg);
        }
    }
}

/// One sample of a window, float or histogram.
#[derive(Clone, Copy)]
enum Sample<'a> {
    Float(f64),
    Hist(&'a FloatHistogram),
}

impl RangeCall {
    /// Overrides the steps of `v` (the float kernel's column of a series) whose window holds
    /// histograms, and returns the histogram results. The series is named `name` (for
    /// annotations) and has floats `fts`/`fvs` and histograms `hts`/`hs`, each sorted by time,
    /// stale markers removed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hist_column(
        &self,
        name: &str,
        (fts_all, fvs_all): (&[i64], &[f64]),
        (hts_all, hs_all): (&[i64], &[FloatHistogram]),
        ends: &[i64],
        range: i64,
        v: &mut [f64],
        notes: &mut Notes,
    ) -> Option<HCol> {
        if self.reach.is_extended() {
            return self.extended_hist_column(
                name,
                (fts_all, fvs_all),
                (hts_all, hs_all),
                ends,
                range,
                v,
                notes,
            );
        }
        let n = v.len();
        let mut fw = vec![(0usize, 0usize); n];
        for_each_window(fts_all, ends, range, |i, lo, hi| fw[i] = (lo, hi));
        let mut out: HCol = vec![None; n];
        let mixed = format!(
            "PromQL warning: encountered a mix of histograms and floats for metric name {name:?}{}",
            self.first_at
        );
        let ignored = format!(
            "PromQL info: ignored histograms in a range containing both floats and histograms for metric name {name:?}{}",
            self.first_at
        );
        // Whether the counters reset at each histogram against the one before it, decided
        // once per series: the windows of a range query overlap (a 10m range at a 1m step sees
        // each pair ten times), and a chunk's first sample, whose hint is unknown, is decided
        // on its buckets.
        let resets: Vec<bool> = if matches!(self.f, F::Rate | F::Increase) {
            std::iter::once(false)
                .chain(
                    hs_all
                        .windows(2)
                        .map(|w| hist_math::detect_reset(&w[1], &w[0], self.compat)),
                )
                .collect()
        } else {
            Vec::new()
        };
        for_each_window(hts_all, ends, range, |i, hlo, hhi| {
            if hhi <= hlo {
                return;
            }
            let (flo, fhi) = fw[i];
            let (fts, fvs) = (&fts_all[flo..fhi], &fvs_all[flo..fhi]);
            let (hts, hs) = (&hts_all[hlo..hhi], &hs_all[hlo..hhi]);
            let floats = !fts.is_empty();
            // Both kinds in time order.
            let merged = || {
                let mut m: Vec<(i64, Sample<'_>)> = fts
                    .iter()
                    .zip(fvs)
                    .map(|(t, x)| (*t, Sample::Float(*x)))
                    .chain(hts.iter().zip(hs).map(|(t, h)| (*t, Sample::Hist(h))))
                    .collect();
                m.sort_by_key(|x| x.0);
                m
            };
            match self.f {
                F::Rate | F::Increase | F::Delta => {
                    v[i] = absent();
                    if floats {
                        notes.warn(mixed.clone());
                        return;
                    }
                    let resets = resets.get(hlo..hhi).unwrap_or(&[]);
                    out[i] = self.hist_rate(hts, hs, resets, ends[i], range, name, notes);
                }
                F::Irate | F::Idelta => {
                    v[i] = absent();
                    let m = merged();
                    if m.len() < 2 {
                        return;
                    }
                    let rate = self.f == F::Irate;
                    let ((t0, a), (t1, b)) = (m[m.len() - 2], m[m.len() - 1]);
                    match (a, b) {
                        (Sample::Float(x), Sample::Float(y)) => {
                            if let Some(r) = instant_delta(&[t0, t1], &[x, y], rate) {
                                v[i] = r;
                            }
                        }
                        (Sample::Hist(p), Sample::Hist(c)) => {
                            let gauge = |h: &FloatHistogram| {
                                h.counter_reset_hint == CounterResetHint::Gauge
                            };
                            if rate && (gauge(p) || gauge(c)) {
                                notes.warn(not_counter(name, &self.first_at));
                            }
                            if !rate && (!gauge(p) || !gauge(c)) {
                                notes.warn(not_gauge(name, &self.first_at));
                            }
                            let mut r = c.clone();
                            if !rate || !hist_math::detect_reset(c, p, self.compat) {
                                match hist_math::sub(c, p, self.compat) {
                                    Ok((d, reconciled)) => {
                                        if reconciled {
                                            notes.info(hist_math::reconciled_info(
                                                "subtraction",
                                                &self.first_at,
                                            ));
                                        }
                                        r = d
                                    }
                                    Err(e) => {
                                        notes.warn(incompatible(e, name, &self.first_at));
                                        return;
                                    }
                                }
                            }
                            r.counter_reset_hint = CounterResetHint::Gauge;
                            if rate {
                                hist_math::divide(&mut r, (t1 - t0) as f64 / 1000.0, self.compat);
                            }
                            out[i] = Some(r);
                        }
                        _ => notes.warn(mixed.clone()),
                    }
                }
                F::Resets | F::Changes => {
                    let m = merged();
                    let mut count = 0.0;
                    for w in m.windows(2) {
                        let hit = match (w[0].1, w[1].1) {
                            (Sample::Float(a), Sample::Float(b)) => {
                                if self.f == F::Resets {
                                    b < a
                                } else {
                                    !(a == b || (a.is_nan() && b.is_nan()))
                                }
                            }
                            (Sample::Hist(a), Sample::Hist(b)) => {
                                if self.f == F::Resets {
                                    hist_math::detect_reset(b, a, self.compat)
                                } else {
                                    !hist_math::equals(a, b)
                                }
                            }
                            _ => true,
                        };
                        if hit {
                            count += 1.0;
                        }
                    }
                    v[i] = count;
                }
                F::SumOverTime | F::AvgOverTime => {
                    v[i] = absent();
                    if floats {
                        notes.warn(mixed.clone());
                        return;
                    }
                    if self.compat.at_least_3_14() {
                        out[i] = self.compensated_sum(hs, name, notes);
                        return;
                    }
                    let mut acc = hs[0].clone();
                    for (k, h) in hs.iter().enumerate().skip(1) {
                        let added = if self.f == F::AvgOverTime {
                            // The mean moved by (h - mean) / count, each side divided
                            // first, as Prometheus's incremental mean does it.
                            hist_math::mean_step(&mut acc, h, (k + 1) as f64, self.compat)
                        } else {
                            hist_math::add_to(&mut acc, h, self.compat)
                        };
                        match added {
                            Ok(true) => notes
                                .info(hist_math::reconciled_info("aggregation", &self.first_at)),
                            Ok(false) => {}
                            Err(e) => {
                                notes.warn(incompatible(e, name, &self.first_at));
                                return;
                            }
                        }
                    }
                    out[i] = Some(acc);
                }
                F::CountOverTime => v[i] = (fts.len() + hts.len()) as f64,
                F::PresentOverTime => v[i] = 1.0,
                F::LastOverTime | F::TsOfLastOverTime => {
                    let (ht, h) = (hts[hts.len() - 1], &hs[hs.len() - 1]);
                    if floats && fts[fts.len() - 1] > ht {
                        return;
                    }
                    if self.f == F::TsOfLastOverTime {
                        v[i] = ht as f64 / 1000.0;
                    } else {
                        v[i] = absent();
                        out[i] = Some(h.clone());
                    }
                }
                F::FirstOverTime | F::TsOfFirstOverTime => {
                    let (ht, h) = (hts[0], &hs[0]);
                    if floats && fts[0] < ht {
                        return;
                    }
                    if self.f == F::TsOfFirstOverTime {
                        v[i] = ht as f64 / 1000.0;
                    } else {
                        v[i] = absent();
                        out[i] = Some(h.clone());
                    }
                }
                // The rest take floats only: histograms are ignored, with a note when floats
                // are there too.
                _ => {
                    if floats {
                        notes.info(ignored.clone());
                    }
                }
            }
        });
        out.iter().any(|x| x.is_some()).then_some(out)
    }

    /// `sum_over_time` or `avg_over_time` of the window's histograms `hs` as Prometheus 3.14
    /// computes it, compensated ([`hist_math::KahanSum`]).
    fn compensated_sum(
        &self,
        hs: &[FloatHistogram],
        name: &str,
        notes: &mut Notes,
    ) -> Option<FloatHistogram> {
        let hinted = |hint| hs.iter().any(|h| h.counter_reset_hint == hint);
        if hinted(CounterResetHint::CounterReset) && hinted(CounterResetHint::NotCounterReset) {
            notes.warn(format!(
                "PromQL warning: conflicting counter resets during histogram aggregation{}",
                self.first_at
            ));
        }
        let mut outcome = |added: Result<bool, hist_math::MathError>| match added {
            Ok(reconciled) => {
                if reconciled {
                    notes.info(hist_math::reconciled_info("aggregation", &self.first_at));
                }
                true
            }
            Err(e) => {
                notes.warn(incompatible(e, name, &self.first_at));
                false
            }
        };
        if self.f == F::AvgOverTime {
            let mut mean = hist_math::KahanMean::new(hs[0].clone());
            for h in &hs[1..] {
                if !outcome(mean.add(h)) {
                    return None;
                }
            }
            return Some(mean.finish());
        }
        let mut sum = hist_math::KahanSum::new(hs[0].clone());
        for h in &hs[1..] {
            if !outcome(sum.add(h)) {
                return None;
            }
        }
        Some(sum.finish())
    }

    /// `rate`, `increase` or `delta` over a window of histograms, extrapolated as for floats
    /// (the count standing in for the value where the start is pulled towards zero).
    /// `resets[k]` (counters only) says whether the counters reset at `hs[k]` against
    /// `hs[k - 1]`, as [`hist_math::detect_reset`] decides it.
    #[allow(clippy::too_many_arguments)]
    fn hist_rate(
        &self,
        ts: &[i64],
        hs: &[FloatHistogram],
        resets: &[bool],
        end: i64,
        range: i64,
        name: &str,
        notes: &mut Notes,
    ) -> Option<FloatHistogram> {
        if hs.len() < 2 {
            return None;
        }
        let counter = self.f != F::Delta;
        let (first, last) = (&hs[0], &hs[hs.len() - 1]);
        let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
        if counter && hs.iter().any(gauge) {
            notes.warn(not_counter(name, &self.first_at));
        }
        // As Prometheus computes it: the last sample less the first, plus the sample before
        // each counter reset. A reset between the first two samples leaves the first out (an
        // empty histogram of the second's layout stands in for it).
        let reset_at = |k: usize| resets.get(k).copied().unwrap_or(false);
        let nulled = (counter && reset_at(1)).then(|| FloatHistogram {
            schema: hs[1].schema,
            custom_values: hs[1].custom_values.clone(),
            ..FloatHistogram::default()
        });
        let start = nulled.as_ref().unwrap_or(first);
        let custom = start.uses_custom_buckets();
        let middle = &hs[1..hs.len() - 1];
        if last.uses_custom_buckets() != custom
            || (counter && middle.iter().any(|h| h.uses_custom_buckets() != custom))
        {
            notes.warn(incompatible(
                hist_math::MathError::MixedSchemas,
                name,
                &self.first_at,
            ));
            return None;
        }
        let mut min_schema = start.schema.min(last.schema);
        if counter {
            min_schema = middle.iter().map(|h| h.schema).fold(min_schema, i32::min);
        }
        let fail = |notes: &mut Notes, e: hist_math::MathError| {
            notes.warn(incompatible(e, name, &self.first_at));
        };
        let mut h = if last.schema > min_schema {
            hist_math::reduce(last, min_schema)
        } else {
            last.clone()
        };
        match hist_math::sub_in_place(&mut h, start, self.compat) {
            Ok(reconciled) => {
                if reconciled {
                    notes.info(hist_math::reconciled_info("subtraction", &self.first_at));
                }
            }
            Err(e) => {
                fail(notes, e);
                return None;
            }
        }
        // `sub_in_place` leaves `h` compacted; only adding to it undoes that.
        let mut added = false;
        if counter {
            let mut prev = start;
            for (k, cur) in hs.iter().enumerate().skip(1) {
                // The empty stand-in for a first sample left out is compared afresh.
                let reset = if k == 1 && nulled.is_some() {
                    hist_math::detect_reset(cur, prev, self.compat)
                } else {
                    reset_at(k)
                };
                if reset {
                    added = true;
                    match hist_math::add_to(&mut h, prev, self.compat) {
                        Ok(true) => {
                            notes.info(hist_math::reconciled_info("addition", &self.first_at))
                        }
                        Ok(false) => {}
                        Err(e) => {
                            fail(notes, e);
                            return None;
                        }
                    }
                }
                prev = cur;
            }
        }
        if !counter && (!gauge(first) || !gauge(last)) {
            notes.warn(not_gauge(name, &self.first_at));
        }
        if added {
            let _ = h.compact(0);
        }
        h.counter_reset_hint = CounterResetHint::Gauge;
        let (first_t, last_t) = (ts[0], ts[ts.len() - 1]);
        let sampled = (last_t - first_t) as f64 / 1000.0;
        let avg_gap = sampled / (ts.len() - 1) as f64;
        let threshold = avg_gap * 1.1;
        let mut to_start = (first_t - (end - range)) as f64 / 1000.0;
        let mut to_end = (end - last_t) as f64 / 1000.0;
        if to_start >= threshold {
            to_start = avg_gap / 2.0;
        }
        // Prometheus 3.14 keeps a counter histogram from extrapolating below zero, by its
        // count as a float counter by its value.
        if counter && self.compat.at_least_3_14() && h.count > 0.0 && first.count >= 0.0 {
            let to_zero = sampled * (first.count / h.count);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        if to_end >= threshold {
            to_end = avg_gap / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if self.f == F::Rate {
            factor /= range as f64 / 1000.0;
        }
        hist_math::scale(&mut h, factor, self.compat);
        Some(h)
    }
}

pub(super) fn not_counter(name: &str, at: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a counter: {name:?}{at}")
}

pub(super) fn not_gauge(name: &str, at: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a gauge: {name:?}{at}")
}

/// The warning for histograms that could not be added or subtracted.
pub(super) fn incompatible(e: hist_math::MathError, name: &str, at: &str) -> String {
    hist_math::incompatible_warning(e, name, at)
}
