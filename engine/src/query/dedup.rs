//! Replica deduplication as Thanos Query does it: HA pairs scrape the same targets at slightly
//! different times, so their samples are interleaved rather than merged, following one replica
//! until it has a gap and only then switching to the other (the "penalty" algorithm).

use super::Series;
use crate::chunk::{HistogramBatch, SampleBatch};
use crate::labels::{Label, Labels};

/// Penalty in ms applied to the replica not chosen before a previous sample is known; sample
/// intervals are typically several seconds.
const INITIAL_PENALTY_MS: i64 = 5000;

/// Functions over counters: when switching replicas their values must not fall, or a small
/// replica lag would read as a counter reset.
pub fn is_counter_func(func: &str) -> bool {
    matches!(func, "rate" | "increase" | "irate" | "resets")
}

/// One replica's samples, floats and native histograms, with a cursor on each and the offset
/// added to its floats to keep a counter from falling.
struct Cursor<'a> {
    f: &'a SampleBatch,
    h: &'a HistogramBatch,
    pf: usize,
    ph: usize,
    adjust: f64,
}

impl<'a> Cursor<'a> {
    fn new(f: &'a SampleBatch, h: &'a HistogramBatch) -> Self {
        Cursor {
            f,
            h,
            pf: 0,
            ph: 0,
            adjust: 0.0,
        }
    }

    /// Whether the current sample is a float (a replica holds one kind per timestamp; should
    /// both be there, the float is taken).
    fn at_float(&self) -> bool {
        match (self.f.ts.get(self.pf), self.h.ts.get(self.ph)) {
            (Some(tf), Some(th)) => tf <= th,
            (Some(_), None) => true,
            _ => false,
        }
    }

    fn v(&self) -> f64 {
        let v = self.f.val[self.pf];
        // Adding even 0.0 would quieten the stale marker's signalling NaN and change its bits.
        if self.adjust == 0.0 {
            v
        } else {
            v + self.adjust
        }
    }
}

/// A replica's read position, as the penalty algorithm moves it.
trait ReplicaCursor {
    /// Moves to the first sample at or after `t` (never backwards); false when exhausted.
    fn seek(&mut self, t: i64) -> bool;
    /// The current sample's timestamp.
    fn t(&self) -> i64;
}

impl ReplicaCursor for Cursor<'_> {
    fn seek(&mut self, t: i64) -> bool {
        if self.pf < self.f.ts.len() && self.f.ts[self.pf] < t {
            self.pf += self.f.ts[self.pf..].partition_point(|&x| x < t);
        }
        if self.ph < self.h.ts.len() && self.h.ts[self.ph] < t {
            self.ph += self.h.ts[self.ph..].partition_point(|&x| x < t);
        }
        self.pf < self.f.ts.len() || self.ph < self.h.ts.len()
    }

    fn t(&self) -> i64 {
        if self.at_float() {
            self.f.ts[self.pf]
        } else {
            self.h.ts[self.ph]
        }
    }
}

/// A replica held as one list of `(timestamp, value)` in time order.
struct SliceCursor<'a, T> {
    items: &'a [(i64, T)],
    p: usize,
}

impl<T> ReplicaCursor for SliceCursor<'_, T> {
    fn seek(&mut self, t: i64) -> bool {
        if self.p < self.items.len() && self.items[self.p].0 < t {
            self.p += self.items[self.p..].partition_point(|x| x.0 < t);
        }
        self.p < self.items.len()
    }

    fn t(&self) -> i64 {
        self.items[self.p].0
    }
}

/// Walks two replicas with the penalty algorithm: take the earlier sample, and hold the other
/// replica back by twice the last step so it is only used across a gap. `emit` gets each
/// sample's replica (true = `a`) and that replica's cursor, positioned at the sample.
fn penalty_walk<C: ReplicaCursor>(a: &mut C, b: &mut C, mut emit: impl FnMut(bool, &mut C)) {
    let mut last_t: Option<i64> = None;
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    loop {
        let floor = last_t.map_or(i64::MIN, |t| t.saturating_add(1));
        let has_a = a.seek(floor.saturating_add(pen_a));
        let has_b = b.seek(floor.saturating_add(pen_b));
        let use_a = match (has_a, has_b) {
            (false, false) => break,
            (true, false) => {
                pen_a = 0;
                true
            }
            (false, true) => {
                pen_b = 0;
                false
            }
            (true, true) => {
                let (ta, tb) = (a.t(), b.t());
                let use_a = ta <= tb;
                let chosen = ta.min(tb);
                let pen = last_t.map_or(INITIAL_PENALTY_MS, |l| 2 * (chosen - l));
                if use_a {
                    pen_b = pen;
                    pen_a = 0;
                } else {
                    pen_a = pen;
                    pen_b = 0;
                }
                use_a
            }
        };
        let cur = if use_a { &mut *a } else { &mut *b };
        let t = cur.t();
        emit(use_a, cur);
        last_t = Some(t);
    }
}

/// Replicas held as lists of `(timestamp, value)` in time order, folded pairwise with the
/// penalty algorithm (`merge(merge(r0, r1), r2)…`, as Thanos does); `on_switch` is applied to
/// each sample taken from another replica than the sample before it.
pub fn penalty_merge_lists<T: Clone>(
    replicas: &[Vec<(i64, T)>],
    on_switch: impl Fn(&mut T),
) -> Vec<(i64, T)> {
    let mut it = replicas.iter();
    let Some(first) = it.next() else {
        return Vec::new();
    };
    let mut acc = first.clone();
    for r in it {
        let mut out = Vec::with_capacity(acc.len().max(r.len()));
        let mut last_from_a: Option<bool> = None;
        let mut ca = SliceCursor { items: &acc, p: 0 };
        let mut cb = SliceCursor { items: r, p: 0 };
        penalty_walk(&mut ca, &mut cb, |from_a, cur| {
            let (t, mut v) = cur.items[cur.p].clone();
            if last_from_a.is_some_and(|prev| prev != from_a) {
                on_switch(&mut v);
            }
            out.push((t, v));
            last_from_a = Some(from_a);
        });
        acc = out;
    }
    acc
}

/// Merges two replicas of one series with the penalty algorithm: take the earlier sample, and
/// hold the other replica back by twice the last step so it is only used across a gap.
/// With `counter`, a replica switched to is offset so the emitted value never falls.
pub fn penalty_merge(a: &SampleBatch, b: &SampleBatch, counter: bool) -> SampleBatch {
    let none = HistogramBatch::new();
    penalty_merge_with_histograms((a, &none), (b, &none), counter).0
}

/// [`penalty_merge`] over replicas holding float and native histogram samples: the two kinds
/// are one time line, as Thanos's deduplicating iterator walks them; a histogram sample is
/// chosen, and sets the penalty, as a float one does. Counter offsets apply between float
/// samples only (a histogram is taken as it is).
pub fn penalty_merge_with_histograms(
    a: (&SampleBatch, &HistogramBatch),
    b: (&SampleBatch, &HistogramBatch),
    counter: bool,
) -> (SampleBatch, HistogramBatch) {
    let mut out = SampleBatch::with_capacity(a.0.len().max(b.0.len()));
    let mut hout = HistogramBatch::new();
    let mut ca = Cursor::new(a.0, a.1);
    let mut cb = Cursor::new(b.0, b.1);
    // Which replica the previous emitted sample came from (true = a), and whether it was a
    // float.
    let mut last_from_a: Option<bool> = None;
    let mut last_float = false;
    penalty_walk(&mut ca, &mut cb, |use_a, cur| {
        let t = cur.t();
        if cur.at_float() {
            if counter
                && last_float
                && last_from_a.is_some_and(|prev| prev != use_a)
                && let Some(&last_v) = out.val.last()
            {
                let v = cur.v();
                if last_v > v {
                    cur.adjust += last_v - v;
                }
            }
            out.push(t, cur.v());
            last_float = true;
        } else {
            hout.push(t, cur.h.h[cur.ph].clone());
            last_float = false;
        }
        last_from_a = Some(use_a);
    });
    (out, hout)
}

/// Folds any number of replicas pairwise, `merge(merge(r0, r1), r2)…`, as Thanos does.
pub fn dedup_replicas(replicas: &[&SampleBatch], counter: bool) -> SampleBatch {
    let mut it = replicas.iter();
    let Some(first) = it.next() else {
        return SampleBatch::new();
    };
    let mut acc = (*first).clone();
    for r in it {
        acc = penalty_merge(&acc, r, counter);
    }
    acc
}

/// [`dedup_replicas`] over replicas holding float and native histogram samples.
pub fn dedup_replicas_with_histograms(
    replicas: &[(&SampleBatch, &HistogramBatch)],
    counter: bool,
) -> (SampleBatch, HistogramBatch) {
    if replicas.iter().all(|r| r.1.is_empty()) {
        let floats: Vec<&SampleBatch> = replicas.iter().map(|r| r.0).collect();
        return (dedup_replicas(&floats, counter), HistogramBatch::new());
    }
    let mut it = replicas.iter();
    let Some(first) = it.next() else {
        return (SampleBatch::new(), HistogramBatch::new());
    };
    let mut acc = (first.0.clone(), first.1.clone());
    for r in it {
        acc = penalty_merge_with_histograms((&acc.0, &acc.1), *r, counter);
    }
    acc
}

/// Drops the labels named in `replica_labels` from every series, then deduplicates the series
/// that become equal with [`dedup_replicas`], in input order. Returns series sorted by labels.
pub fn dedup_series(series: Vec<Series>, replica_labels: &[String], counter: bool) -> Vec<Series> {
    let mut stripped: Vec<Series> = series
        .into_iter()
        .map(|s| Series {
            labels: without_labels(&s.labels, replica_labels),
            samples: s.samples,
            histograms: s.histograms,
        })
        .collect();
    // Stable: replicas keep their input order, which decides ties in the merge.
    stripped.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(stripped.len());
    let mut group: Vec<Series> = Vec::new();
    for s in stripped {
        if group.first().is_some_and(|g| g.labels != s.labels) {
            out.push(fold_group(std::mem::take(&mut group), counter));
        }
        group.push(s);
    }
    if !group.is_empty() {
        out.push(fold_group(group, counter));
    }
    out
}

fn fold_group(mut group: Vec<Series>, counter: bool) -> Series {
    if group.len() == 1 {
        return group.pop().unwrap_or_default();
    }
    let (samples, histograms) = dedup_replicas_with_histograms(
        &group
            .iter()
            .map(|s| (&s.samples, &s.histograms))
            .collect::<Vec<_>>(),
        counter,
    );
    let labels = group.swap_remove(0).labels;
    Series {
        labels,
        samples,
        histograms,
    }
}

/// `labels` without the named labels.
pub fn without_labels(labels: &Labels, names: &[String]) -> Labels {
    if names.is_empty() || !labels.iter().any(|l| names.iter().any(|n| *n == l.name)) {
        return labels.clone();
    }
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| !names.iter().any(|n| *n == l.name))
            .cloned()
            .collect::<Vec<Label>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(s: &[(i64, f64)]) -> SampleBatch {
        let mut b = SampleBatch::new();
        for &(t, v) in s {
            b.push(t, v);
        }
        b
    }

    fn every(start: i64, step: i64, n: usize, v: impl Fn(usize) -> f64) -> SampleBatch {
        let mut b = SampleBatch::new();
        for i in 0..n {
            b.push(start + step * i as i64, v(i));
        }
        b
    }

    #[test]
    fn identical_replicas_give_one_copy() {
        let a = every(0, 15_000, 100, |i| i as f64);
        assert_eq!(penalty_merge(&a, &a, false), a);
        assert_eq!(dedup_replicas(&[&a, &a, &a], false), a);
    }

    #[test]
    fn offset_replicas_are_not_interleaved() {
        // Replica b scrapes 5 s after a; a full interleave would double the sample rate.
        let a = every(0, 15_000, 40, |_| 1.0);
        let b = every(5_000, 15_000, 40, |_| 2.0);
        let out = penalty_merge(&a, &b, false);
        assert_eq!(out.ts, a.ts, "stays on replica a");
        assert!(out.val.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn a_gap_in_one_replica_is_filled_from_the_other() {
        // a misses samples 10..20; b (offset 5 s) covers the gap after its penalty runs out,
        // and then stays chosen: a is only used again across a gap in b.
        let mut a = SampleBatch::new();
        for i in (0..10).chain(20..40) {
            a.push(i * 15_000, 1.0);
        }
        let b = every(5_000, 15_000, 40, |_| 2.0);
        let out = penalty_merge(&a, &b, false);
        // The rate never doubles: no two samples closer than 15 s, and the gap is bridged.
        for w in out.ts.windows(2) {
            let d = w[1] - w[0];
            assert!((15_000..=45_000).contains(&d), "step {d} in {:?}", out.ts);
        }
        let from_b: Vec<i64> = out
            .iter()
            .filter(|&(_, v)| v == 2.0)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(from_b.first(), Some(&(5_000 + 11 * 15_000)), "{from_b:?}");
        assert!(out.ts.first() == Some(&0) && out.ts.last() >= Some(&(39 * 15_000)));
    }

    #[test]
    fn penalty_follows_thanos_steps_exactly() {
        // a: 0, 10, 20, 30 s; b: 11, 21, 41, 61 s. a@0 (b held back 5 s); a@10 beats b@11 and
        // b is held back 2*(10-0) = 20 s; a@20 and a@30 likewise; after a@30 b must reach
        // 30 + 20 + 0.001 s, so b@41 is skipped and b@61 follows.
        let a = batch(&[(0, 1.0), (10_000, 1.0), (20_000, 1.0), (30_000, 1.0)]);
        let b = batch(&[(11_000, 2.0), (21_000, 2.0), (41_000, 2.0), (61_000, 2.0)]);
        let out = penalty_merge(&a, &b, false);
        assert_eq!(out.ts, vec![0, 10_000, 20_000, 30_000, 61_000]);
        assert_eq!(out.val, vec![1.0, 1.0, 1.0, 1.0, 2.0]);
    }

    #[test]
    fn counters_do_not_fall_when_switching_replicas() {
        // b lags a's counter by 5; after a stops, b's values are raised to continue a's.
        let a = batch(&[(0, 100.0), (10_000, 110.0)]);
        let b = batch(&[(40_000, 115.0), (50_000, 125.0)]);
        let plain = penalty_merge(&a, &b, false);
        assert_eq!(plain.val, vec![100.0, 110.0, 115.0, 125.0]);
        let b_low = batch(&[(40_000, 105.0), (50_000, 115.0)]);
        let adjusted = penalty_merge(&a, &b_low, true);
        assert_eq!(adjusted.ts, vec![0, 10_000, 40_000, 50_000]);
        assert_eq!(adjusted.val, vec![100.0, 110.0, 110.0, 120.0]);
        let not_adjusted = penalty_merge(&a, &b_low, false);
        assert_eq!(not_adjusted.val, vec![100.0, 110.0, 105.0, 115.0]);
    }

    #[test]
    fn stale_markers_survive_bit_for_bit() {
        let stale = f64::from_bits(crate::chunk::STALE_NAN_BITS);
        let a = batch(&[(0, 1.0), (15_000, stale)]);
        let out = penalty_merge(&a, &SampleBatch::new(), false);
        assert_eq!(out.val[1].to_bits(), crate::chunk::STALE_NAN_BITS);
    }

    fn hist(count: f64) -> crate::histogram::FloatHistogram {
        crate::histogram::FloatHistogram {
            count,
            ..Default::default()
        }
    }

    #[test]
    fn histogram_samples_take_part_in_the_penalty_as_floats_do() {
        // a: floats at 0 and 10 s, histograms at 20 and 30 s; b: histograms 11, 21, 41, 61 s.
        // The time line is the same as in `penalty_follows_thanos_steps_exactly`.
        let af = batch(&[(0, 1.0), (10_000, 1.0)]);
        let mut ah = HistogramBatch::new();
        ah.push(20_000, hist(1.0));
        ah.push(30_000, hist(1.0));
        let bf = SampleBatch::new();
        let mut bh = HistogramBatch::new();
        for t in [11_000, 21_000, 41_000, 61_000] {
            bh.push(t, hist(2.0));
        }
        let (f, h) = penalty_merge_with_histograms((&af, &ah), (&bf, &bh), true);
        assert_eq!(f.ts, vec![0, 10_000]);
        assert_eq!(h.ts, vec![20_000, 30_000, 61_000]);
        assert_eq!(
            h.h.iter().map(|h| h.count).collect::<Vec<_>>(),
            vec![1.0, 1.0, 2.0]
        );
        // Identical replicas give one copy of each kind.
        let (f, h) = dedup_replicas_with_histograms(&[(&af, &ah), (&af, &ah), (&af, &ah)], false);
        assert_eq!((f, h), (af.clone(), ah.clone()));
    }

    #[test]
    fn series_group_by_labels_without_replica_labels() {
        let mk = |replica: &str, job: &str, v: f64| {
            Series::floats(
                Labels::from_pairs([("__name__", "up"), ("job", job), ("replica", replica)]),
                every(0, 15_000, 4, |_| v),
            )
        };
        let input = vec![mk("b", "api", 2.0), mk("a", "api", 1.0), mk("a", "db", 3.0)];
        let out = dedup_series(input, &["replica".to_string()], false);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].labels,
            Labels::from_pairs([("__name__", "up"), ("job", "api")])
        );
        // Equal timestamps: the first replica in input order wins.
        assert!(out[0].samples.val.iter().all(|&v| v == 2.0));
        assert_eq!(out[1].labels.get("job"), Some("db"));
        assert_eq!(out[1].samples.len(), 4);
        // No replica labels: nothing is merged.
        let same = dedup_series(vec![mk("a", "x", 1.0), mk("b", "x", 1.0)], &[], false);
        assert_eq!(same.len(), 2);
        assert!(dedup_series(Vec::new(), &[], false).is_empty());
    }
}
