//! Columnar decoded samples, reused across chunks so decoding allocates nothing per sample.

use crate::histogram::FloatHistogram;

/// Float samples as two parallel columns: `ts[i]` (ms since the Unix epoch) goes with `val[i]`.
///
/// Keep one batch per query and [`clear`](SampleBatch::clear) it between series: the columns
/// keep their capacity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleBatch {
    /// Sample timestamps, ms since the Unix epoch.
    pub ts: Vec<i64>,
    /// Sample values; NaN payloads (stale markers) are kept bit for bit.
    pub val: Vec<f64>,
}

impl SampleBatch {
    /// An empty batch.
    pub fn new() -> Self {
        SampleBatch::default()
    }

    /// An empty batch with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        SampleBatch {
            ts: Vec::with_capacity(n),
            val: Vec::with_capacity(n),
        }
    }

    /// Drops every sample, keeping the allocations.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.val.clear();
    }

    /// Number of samples.
    #[inline]
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether the batch holds no sample.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one sample.
    #[inline]
    pub fn push(&mut self, t: i64, v: f64) {
        self.ts.push(t);
        self.val.push(v);
    }

    /// Reserves room for `n` more samples in both columns.
    pub fn reserve(&mut self, n: usize) {
        self.ts.reserve(n);
        self.val.reserve(n);
    }

    /// Shortens both columns to `len` samples.
    pub fn truncate(&mut self, len: usize) {
        self.ts.truncate(len);
        self.val.truncate(len);
    }

    /// Keeps only the samples with `mint <= t <= maxt` (both ms, inclusive), in their order.
    ///
    /// Samples need not be sorted; sorted input costs one pass over the kept range.
    pub fn truncate_to_range(&mut self, mint: i64, maxt: i64) {
        let n = self.ts.len().min(self.val.len());
        let in_range = |t: i64| mint <= t && t <= maxt;
        // Sorted batches keep a contiguous run: find it and shift it down.
        let start = self.ts[..n].iter().position(|&t| in_range(t)).unwrap_or(n);
        let run_end = self.ts[start..n]
            .iter()
            .position(|&t| !in_range(t))
            .map_or(n, |p| start + p);
        let mut kept = run_end - start;
        if start > 0 {
            self.ts.copy_within(start..run_end, 0);
            self.val.copy_within(start..run_end, 0);
        }
        // Unsorted input may have more in-range samples after the run.
        for i in run_end..n {
            let t = self.ts[i];
            if in_range(t) {
                self.ts[kept] = t;
                self.val[kept] = self.val[i];
                kept += 1;
            }
        }
        self.truncate(kept);
    }

    /// Iterates over `(t, v)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.ts.iter().copied().zip(self.val.iter().copied())
    }
}

/// Native histogram samples as two parallel columns: `ts[i]` (ms since the Unix epoch) goes with
/// `h[i]`. Integer histograms are held as float histograms, as PromQL reads them; stale markers
/// (a histogram whose sum is the stale NaN) are kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramBatch {
    /// Sample timestamps, ms since the Unix epoch.
    pub ts: Vec<i64>,
    /// The histograms.
    pub h: Vec<FloatHistogram>,
}

impl HistogramBatch {
    /// An empty batch.
    pub fn new() -> Self {
        HistogramBatch::default()
    }

    /// Drops every sample, keeping the allocations.
    pub fn clear(&mut self) {
        self.ts.clear();
        self.h.clear();
    }

    /// Number of samples.
    #[inline]
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether the batch holds no sample.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one sample.
    #[inline]
    pub fn push(&mut self, t: i64, h: FloatHistogram) {
        self.ts.push(t);
        self.h.push(h);
    }

    /// Keeps only the samples with `mint <= t <= maxt` (both ms, inclusive); the batch must be
    /// sorted by time.
    pub fn truncate_to_range(&mut self, mint: i64, maxt: i64) {
        let lo = self.ts.partition_point(|&t| t < mint);
        let hi = self.ts.partition_point(|&t| t <= maxt).max(lo);
        self.ts.truncate(hi);
        self.h.truncate(hi);
        self.ts.drain(..lo);
        self.h.drain(..lo);
    }

    /// Iterates over `(t, histogram)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &FloatHistogram)> + '_ {
        self.ts.iter().copied().zip(self.h.iter())
    }

    /// Merges time-sorted batches into one; on equal timestamps the batch that comes later in
    /// `parts` wins.
    pub fn merge(parts: &[&HistogramBatch]) -> HistogramBatch {
        let parts: Vec<&HistogramBatch> = parts.iter().copied().filter(|b| !b.is_empty()).collect();
        match parts.as_slice() {
            [] => return HistogramBatch::new(),
            [one] => return (*one).clone(),
            _ => {}
        }
        let mut out = HistogramBatch::new();
        let mut pos = vec![0usize; parts.len()];
        loop {
            let mut best: Option<(i64, usize)> = None;
            for (i, b) in parts.iter().enumerate() {
                if let Some(&t) = b.ts.get(pos[i])
                    && best.is_none_or(|(bt, _)| t <= bt)
                {
                    best = Some((t, i));
                }
            }
            let Some((t, win)) = best else { break };
            out.push(t, parts[win].h[pos[win]].clone());
            for (i, b) in parts.iter().enumerate() {
                if b.ts.get(pos[i]) == Some(&t) {
                    pos[i] += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(ts: &[i64]) -> SampleBatch {
        let mut b = SampleBatch::new();
        for &t in ts {
            b.push(t, t as f64 * 0.5);
        }
        b
    }

    #[test]
    fn truncate_to_range_is_inclusive_at_both_ends() {
        let mut b = batch(&[1, 2, 3, 4, 5, 6]);
        b.truncate_to_range(2, 5);
        assert_eq!(b.ts, vec![2, 3, 4, 5]);
        assert_eq!(b.val, vec![1.0, 1.5, 2.0, 2.5]);
    }

    #[test]
    fn truncate_to_range_can_empty_the_batch() {
        let mut b = batch(&[1, 2, 3]);
        b.truncate_to_range(10, 20);
        assert!(b.is_empty());
        assert!(b.val.is_empty());
        let mut b = batch(&[1, 2, 3]);
        b.truncate_to_range(3, 1);
        assert!(b.is_empty());
    }

    #[test]
    fn clear_keeps_capacity() {
        let mut b = SampleBatch::with_capacity(100);
        b.push(1, 1.0);
        b.clear();
        assert!(b.is_empty());
        assert!(b.ts.capacity() >= 100 && b.val.capacity() >= 100);
    }

    proptest! {
        #[test]
        fn truncate_to_range_equals_filter(ts in proptest::collection::vec(-20i64..20, 0..50), mint in -25i64..25, maxt in -25i64..25) {
            let mut b = batch(&ts);
            let want: Vec<(i64, f64)> = b.iter().filter(|&(t, _)| mint <= t && t <= maxt).collect();
            b.truncate_to_range(mint, maxt);
            prop_assert_eq!(b.iter().collect::<Vec<_>>(), want);
        }
    }

    fn hist(count: f64) -> FloatHistogram {
        FloatHistogram {
            count,
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn histogram_batches_merge_with_the_later_part_winning() {
        let mut a = HistogramBatch::new();
        a.push(1, hist(1.0));
        a.push(3, hist(3.0));
        let mut b = HistogramBatch::new();
        b.push(2, hist(20.0));
        b.push(3, hist(30.0));
        let m = HistogramBatch::merge(&[&a, &b]);
        assert_eq!(m.ts, vec![1, 2, 3]);
        assert_eq!(
            m.h.iter().map(|h| h.count).collect::<Vec<_>>(),
            vec![1.0, 20.0, 30.0]
        );
        let mut m = m;
        m.truncate_to_range(2, 2);
        assert_eq!(m.ts, vec![2]);
        assert_eq!(m.h[0].count, 20.0);
    }
}
