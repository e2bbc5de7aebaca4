//! One series of the head: its labels, its WAL ref, the chunks it has closed, its open chunk
//! and the out-of-order samples it holds.

use super::histograms::{HistSeries, HistogramValue, OooRefusal};
use super::labels::SeriesLabels;
use crate::block::cut::{ChunkCutter, CutChunk, CutOptions, cut_chunks};
use crate::block::histogram_cut::{CutHistogramChunk, HistogramChunkCutter};
use crate::chunk::{HistogramBatch, SampleBatch, decode_xor_into};

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored in order.
    InOrder,
    /// Stored among the out-of-order samples (within the out-of-order window).
    OutOfOrder,
    /// The same timestamp and value bits as a stored sample: nothing to do, not an error.
    Duplicate,
    /// Older than the series' newest sample, with no out-of-order window.
    RefusedOutOfOrder,
    /// Older than the series' newest sample and outside the out-of-order window (Prometheus's
    /// "too old sample").
    RefusedTooOld,
    /// The series already has a different value at this timestamp (or a sample of the other
    /// kind, float or histogram).
    RefusedDuplicateTimestamp,
    /// A histogram that does not validate; nothing was stored.
    RefusedInvalid,
}

/// The bounds a sample is checked against, from the head as a whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendBounds {
    /// Out-of-order samples at or after this time are kept, ms; `i64::MAX` when the window
    /// is 0 (none are).
    pub ooo_min: i64,
}

/// A series held in memory.
#[derive(Debug)]
pub(crate) struct MemSeries {
    pub labels: SeriesLabels,
    /// The series' reference in the WAL.
    pub r: u64,
    /// Closed chunks, in time order, not overlapping. Boxed without spare room: one is added
    /// every half hour or so, and a million series would keep a `Vec`'s capacity word and
    /// slack for nothing.
    pub chunks: Box<[CutChunk]>,
    /// The chunk samples are appended to.
    pub open: ChunkCutter,
    /// Out-of-order samples, sorted by time, distinct timestamps.
    pub ooo: OooSamples,
    /// Native histogram chunks, for series that received a histogram.
    pub hist: Option<Box<HistSeries>>,
}

/// A series' out-of-order samples, sorted by time, distinct timestamps: one pointer while
/// there are none, as for nearly every series.
// The box makes the field one thin pointer, where a `Vec` would take three words.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct OooSamples(Option<Box<Vec<(i64, f64)>>>);

impl std::ops::Deref for OooSamples {
    type Target = [(i64, f64)];

    fn deref(&self) -> &[(i64, f64)] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl OooSamples {
    fn insert(&mut self, i: usize, s: (i64, f64)) {
        self.0.get_or_insert_default().insert(i, s);
    }

    fn retain(&mut self, keep: impl FnMut(&(i64, f64)) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl MemSeries {
    pub fn new(labels: SeriesLabels, r: u64) -> Self {
        MemSeries {
            labels,
            r,
            chunks: Box::default(),
            open: ChunkCutter::new(),
            ooo: OooSamples::default(),
            hist: None,
        }
    }

    /// The newest in-order timestamp, float or histogram, ms.
    pub fn newest(&self) -> Option<i64> {
        let float = self
            .open
            .max_time()
            .or_else(|| self.chunks.last().map(|c| c.max_time));
        let hist = self
            .hist
            .as_ref()
            .and_then(|h| h.last.as_ref().map(|l| l.0));
        float.max(hist)
    }

    /// The newest histogram when it is the series' newest sample: a float stale marker then
    /// becomes a histogram stale marker of its kind, as Prometheus's head turns it.
    pub fn last_histogram(&self) -> Option<&HistogramValue> {
        let (t, h) = self.hist.as_ref()?.last.as_ref()?;
        (self.open.max_time().is_none_or(|f| f < *t)).then_some(h)
    }

    /// Appends a histogram after the series' newest sample; an older one is kept out of order
    /// within the window, as Prometheus 3 keeps out-of-order native histograms, and refused
    /// as out of order (no window) or too old (outside it).
    pub fn append_histogram(
        &mut self,
        t: i64,
        h: HistogramValue,
        opts: &CutOptions,
        b: AppendBounds,
    ) -> Appended {
        if let Some(max) = self.newest() {
            if t == max {
                let same = self
                    .hist
                    .as_ref()
                    .and_then(|x| x.last.as_ref())
                    .is_some_and(|(lt, last)| *lt == t && last.same_as(&h));
                return if same {
                    Appended::Duplicate
                } else {
                    Appended::RefusedDuplicateTimestamp
                };
            }
            if t < max {
                if b.ooo_min == i64::MAX {
                    return Appended::RefusedOutOfOrder;
                }
                if t < b.ooo_min {
                    return Appended::RefusedTooOld;
                }
                return self.append_ooo_histogram(t, h, opts);
            }
        }
        let hist = self
            .hist
            .get_or_insert_with(|| Box::new(HistSeries::new(opts.chunk_range_ms)));
        if hist.append(t, h).is_err() {
            return Appended::RefusedInvalid;
        }
        // A histogram ends the open float chunk: the next float starts a chunk of its own.
        if let Some(c) = self.open.finish() {
            let mut chunks = std::mem::take(&mut self.chunks).into_vec();
            chunks.push(c);
            self.chunks = chunks.into_boxed_slice();
        }
        Appended::InOrder
    }

    /// Keeps a histogram among the out-of-order ones; the caller has checked it against the
    /// window. A sample held at `t` already decides as for floats: the same histogram is a
    /// duplicate, anything else (a float included) a conflict.
    pub fn append_ooo_histogram(
        &mut self,
        t: i64,
        h: HistogramValue,
        opts: &CutOptions,
    ) -> Appended {
        if h.validate().is_err() {
            return Appended::RefusedInvalid;
        }
        if self.float_at(t) {
            return Appended::RefusedDuplicateTimestamp;
        }
        let hist = self
            .hist
            .get_or_insert_with(|| Box::new(HistSeries::new(opts.chunk_range_ms)));
        match hist.insert_ooo(t, h) {
            Ok(()) => Appended::OutOfOrder,
            Err(OooRefusal::Duplicate) => Appended::Duplicate,
            Err(OooRefusal::Conflict) => Appended::RefusedDuplicateTimestamp,
            Err(OooRefusal::Invalid) => Appended::RefusedInvalid,
        }
    }

    /// Whether a float sample is held at exactly `t`, in order or not.
    fn float_at(&self, t: i64) -> bool {
        self.ooo.binary_search_by_key(&t, |s| s.0).is_ok() || self.in_order_at(t).is_some()
    }

    /// Appends the histograms in `[mint, maxt]` to `out`, in time order.
    pub fn histograms_into(&self, mint: i64, maxt: i64, out: &mut HistogramBatch) {
        if let Some(h) = &self.hist {
            h.histograms_into(mint, maxt, out);
        }
    }

    /// The histogram chunks wholly in `[mint, maxt)`, for a block (histogram chunks never
    /// cross a multiple of the chunk range, so never a block's edge).
    pub fn block_histogram_chunks(&self, mint: i64, maxt: i64) -> Vec<CutHistogramChunk> {
        let Some(h) = &self.hist else {
            return Vec::new();
        };
        h.all_chunks()
            .filter(|c| c.1 >= mint && c.2 < maxt)
            .map(|(encoding, min_time, max_time, data)| CutHistogramChunk {
                encoding,
                min_time,
                max_time,
                data: data.to_vec(),
            })
            .collect()
    }

    /// Oldest timestamp held, in order or not, ms.
    pub fn min_time(&self) -> Option<i64> {
        let in_order = self
            .chunks
            .first()
            .map(|c| c.min_time)
            .or_else(|| self.open.open().map(|o| o.0));
        let hist = self.hist.as_ref().and_then(|h| h.min_time());
        [in_order, self.ooo.first().map(|s| s.0), hist]
            .into_iter()
            .flatten()
            .min()
    }

    /// Appends one sample; the caller has checked it against the head's lower bound.
    pub fn append(&mut self, t: i64, v: f64, opts: &CutOptions, b: AppendBounds) -> Appended {
        let newest = match &self.hist {
            None => self.open.max_time(),
            Some(_) => self.newest(),
        };
        match newest {
            Some(max) if t == max => {
                if self.open.max_time() == Some(max)
                    && Some(v.to_bits()) == self.open.last_value_bits()
                {
                    Appended::Duplicate
                } else {
                    Appended::RefusedDuplicateTimestamp
                }
            }
            Some(max) if t < max => {
                if b.ooo_min == i64::MAX {
                    return Appended::RefusedOutOfOrder;
                }
                if t < b.ooo_min {
                    return Appended::RefusedTooOld;
                }
                self.append_ooo(t, v)
            }
            _ => {
                if let Some(h) = &mut self.hist {
                    h.close();
                }
                if let Some(c) = self.open.push(t, v, opts) {
                    let mut chunks = std::mem::take(&mut self.chunks).into_vec();
                    chunks.push(c);
                    self.chunks = chunks.into_boxed_slice();
                }
                Appended::InOrder
            }
        }
    }

    pub fn append_ooo(&mut self, t: i64, v: f64) -> Appended {
        // A histogram at this timestamp: a float cannot join it.
        if self.hist.as_ref().is_some_and(|h| h.holds(t)) {
            return Appended::RefusedDuplicateTimestamp;
        }
        match self.ooo.binary_search_by_key(&t, |s| s.0) {
            Ok(i) if self.ooo[i].1.to_bits() == v.to_bits() => Appended::Duplicate,
            Ok(_) => Appended::RefusedDuplicateTimestamp,
            Err(i) => {
                // A sample already stored in order at this timestamp decides too.
                if let Some(existing) = self.in_order_at(t) {
                    return if existing.to_bits() == v.to_bits() {
                        Appended::Duplicate
                    } else {
                        Appended::RefusedDuplicateTimestamp
                    };
                }
                self.ooo.insert(i, (t, v));
                Appended::OutOfOrder
            }
        }
    }

    /// The in-order sample at exactly `t`, if any (decodes the one chunk that may hold it).
    fn in_order_at(&self, t: i64) -> Option<f64> {
        let mut batch = SampleBatch::new();
        let data = self
            .chunks
            .iter()
            .find(|c| c.min_time <= t && t <= c.max_time)
            .map(|c| &*c.data)
            .or_else(|| {
                self.open
                    .open()
                    .filter(|o| o.0 <= t && t <= o.1)
                    .map(|o| o.2)
            })?;
        decode_xor_into(data, &mut batch).ok()?;
        let i = batch.ts.binary_search(&t).ok()?;
        Some(batch.val[i])
    }

    /// Appends the samples in `[mint, maxt]` to `out` (sorted, in-order and out-of-order merged).
    pub fn samples_into(&self, mint: i64, maxt: i64, out: &mut SampleBatch) {
        let start = out.len();
        let open = self.open.open();
        let parts = || {
            self.chunks
                .iter()
                .map(|c| (c.min_time, c.max_time, &*c.data))
                .chain(open)
                .filter(|&(lo, hi, _)| hi >= mint && lo <= maxt)
        };
        // Room for every sample of the overlapping chunks (each payload starts with its
        // big-endian sample count), so the batch is allocated once: these reads run on the
        // head's cores, where every reallocation is a fresh page the querying thread frees.
        let room: usize = parts()
            .map(|(_, _, d)| {
                d.get(..2)
                    .map_or(0, |n| usize::from(u16::from_be_bytes([n[0], n[1]])))
            })
            .sum();
        out.ts.reserve(room);
        out.val.reserve(room);
        for (_, _, data) in parts() {
            let from = out.len();
            // The head wrote these payloads itself; a failure would be a bug, and the samples
            // decoded before it are still right.
            let _ = decode_xor_into(data, out);
            // A chunk's samples are in time order: keep the run inside the range.
            let got = &out.ts[from..];
            let lo = got.partition_point(|&t| t < mint);
            let hi = got.partition_point(|&t| t <= maxt);
            out.ts.truncate(from + hi);
            out.val.truncate(from + hi);
            if lo > 0 {
                out.ts.drain(from..from + lo);
                out.val.drain(from..from + lo);
            }
        }
        let ooo: Vec<(i64, f64)> = self
            .ooo
            .iter()
            .copied()
            .filter(|&(t, _)| t >= mint && t <= maxt)
            .collect();
        if !ooo.is_empty() {
            let mut merged = SampleBatch::with_capacity(out.len() - start + ooo.len());
            let (ts, vs) = (&out.ts[start..], &out.val[start..]);
            let (mut i, mut j) = (0, 0);
            while i < ts.len() || j < ooo.len() {
                if j >= ooo.len() || (i < ts.len() && ts[i] < ooo[j].0) {
                    merged.push(ts[i], vs[i]);
                    i += 1;
                } else {
                    merged.push(ooo[j].0, ooo[j].1);
                    j += 1;
                }
            }
            out.truncate(start);
            for (t, v) in merged.iter() {
                out.push(t, v);
            }
        }
    }

    /// Whether any sample lies in `[mint, maxt]`, judged by chunk bounds.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.chunks
            .iter()
            .any(|c| c.max_time >= mint && c.min_time <= maxt)
            || self.open.open().is_some_and(|o| o.1 >= mint && o.0 <= maxt)
            || self.ooo.iter().any(|&(t, _)| t >= mint && t <= maxt)
            || self.hist.as_ref().is_some_and(|h| {
                h.all_chunks().any(|c| c.2 >= mint && c.1 <= maxt) || h.has_ooo_in(mint, maxt)
            })
    }

    /// The series' float and histogram chunks in `[mint, maxt)` for a block. Out-of-order
    /// samples of a series that holds histograms there are merged with the in-order ones into
    /// one time line and cut afresh (floats into XOR chunks, histograms into chunks of their
    /// kind, each kind closing the other's chunk), so the two kinds' chunks never overlap.
    pub fn block_all_chunks(
        &self,
        mint: i64,
        maxt: i64,
        opts: &CutOptions,
    ) -> (Vec<CutChunk>, Vec<CutHistogramChunk>) {
        let recut = self.hist.as_ref().is_some_and(|h| {
            h.has_ooo_in(mint, maxt - 1)
                || (self.ooo.iter().any(|&(t, _)| t >= mint && t < maxt)
                    && (h.all_chunks().any(|c| c.2 >= mint && c.1 < maxt)))
        });
        if !recut {
            return (
                self.block_chunks(mint, maxt, opts),
                self.block_histogram_chunks(mint, maxt),
            );
        }
        let mut floats = SampleBatch::new();
        self.samples_into(mint, maxt - 1, &mut floats);
        let hists = self
            .hist
            .as_ref()
            .map(|h| h.values(mint, maxt - 1))
            .unwrap_or_default();
        cut_time_line(&floats, &hists, opts)
    }

    /// The series' data in `[mint, maxt)` as chunks for a block: the head's own chunks when no
    /// out-of-order sample falls in the range (chunks never cross the range's edges, which
    /// are multiples of the chunk range), else the samples merged and cut afresh.
    pub fn block_chunks(&self, mint: i64, maxt: i64, opts: &CutOptions) -> Vec<CutChunk> {
        let ooo_in = self.ooo.iter().any(|&(t, _)| t >= mint && t < maxt);
        let open = self.open.open();
        let straddles = self
            .chunks
            .iter()
            .map(|c| (c.min_time, c.max_time))
            .chain(open.map(|o| (o.0, o.1)))
            .any(|(lo, hi)| lo < maxt && hi >= maxt || lo < mint && hi >= mint);
        if !ooo_in && !straddles {
            let mut out: Vec<CutChunk> = self
                .chunks
                .iter()
                .filter(|c| c.min_time >= mint && c.max_time < maxt)
                .cloned()
                .collect();
            if let Some((lo, hi, data)) = open
                && lo >= mint
                && hi < maxt
            {
                out.push(CutChunk {
                    min_time: lo,
                    max_time: hi,
                    data: data.into(),
                });
            }
            return out;
        }
        let mut batch = SampleBatch::new();
        self.samples_into(mint, maxt - 1, &mut batch);
        cut_chunks(&batch.ts, &batch.val, *opts)
    }

    /// Drops every sample before `mint` (ms); returns whether the series still holds samples.
    /// The open chunk stays when any of its samples is at or after `mint`.
    pub fn truncate_before(&mut self, mint: i64) -> bool {
        if self.chunks.iter().any(|c| c.max_time < mint) {
            let mut chunks = std::mem::take(&mut self.chunks).into_vec();
            chunks.retain(|c| c.max_time >= mint);
            self.chunks = chunks.into_boxed_slice();
        }
        if let Some((_, hi, _)) = self.open.open()
            && hi < mint
        {
            // Keep the cutter's notion of the newest timestamp: a later sample older than it
            // is still out of order. An empty chunk cannot say so, so the series is kept
            // only if it has other data.
            let _ = self.open.finish();
        }
        self.ooo.retain(|&(t, _)| t >= mint);
        let hist_left = self.hist.as_mut().is_some_and(|h| h.truncate_before(mint));
        !self.chunks.is_empty() || self.open.open().is_some() || !self.ooo.is_empty() || hist_left
    }

    /// Bytes of memory the series' samples take (chunk payloads, the open chunk's whole
    /// buffer, the closed chunks' bounds and out-of-order samples).
    pub fn data_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.data.len() + std::mem::size_of::<CutChunk>())
            .sum::<usize>()
            + self.open.room()
            + self.ooo.len() * 16
            + self.hist.as_ref().map_or(0, |h| h.data_bytes())
    }
}

/// Cuts one series' floats and histograms (each sorted, timestamps distinct across both) into
/// chunks as the head would have cut them arriving in time order.
fn cut_time_line(
    floats: &SampleBatch,
    hists: &[(i64, HistogramValue)],
    opts: &CutOptions,
) -> (Vec<CutChunk>, Vec<CutHistogramChunk>) {
    let mut fc = ChunkCutter::new();
    let mut hc = HistogramChunkCutter::new(opts.chunk_range_ms);
    let mut float_chunks = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < floats.len() || j < hists.len() {
        if j >= hists.len() || (i < floats.len() && floats.ts[i] < hists[j].0) {
            hc.close();
            float_chunks.extend(fc.push(floats.ts[i], floats.val[i], opts));
            i += 1;
        } else {
            float_chunks.extend(fc.finish());
            let (t, h) = &hists[j];
            // The head validated every histogram it holds.
            let _ = match h {
                HistogramValue::Int(x) => hc.append_histogram(*t, x),
                HistogramValue::Float(x) => hc.append_float_histogram(*t, x),
            };
            j += 1;
        }
    }
    float_chunks.extend(fc.finish());
    (float_chunks, hc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_OOO: AppendBounds = AppendBounds { ooo_min: i64::MAX };

    fn series() -> MemSeries {
        MemSeries::new(SeriesLabels::from_pairs([("__name__", "x")]), 1)
    }

    fn all(s: &MemSeries) -> Vec<(i64, f64)> {
        let mut b = SampleBatch::new();
        s.samples_into(i64::MIN, i64::MAX, &mut b);
        b.iter().collect()
    }

    #[test]
    fn in_order_duplicates_and_conflicts() {
        let o = CutOptions::default();
        let mut s = series();
        assert_eq!(s.append(10, 1.0, &o, NO_OOO), Appended::InOrder);
        assert_eq!(s.append(20, 2.0, &o, NO_OOO), Appended::InOrder);
        assert_eq!(s.append(20, 2.0, &o, NO_OOO), Appended::Duplicate);
        assert_eq!(
            s.append(20, 3.0, &o, NO_OOO),
            Appended::RefusedDuplicateTimestamp
        );
        assert_eq!(s.append(15, 3.0, &o, NO_OOO), Appended::RefusedOutOfOrder);
        assert_eq!(all(&s), vec![(10, 1.0), (20, 2.0)]);
    }

    #[test]
    fn out_of_order_within_the_window_merges() {
        let o = CutOptions::default();
        let b = AppendBounds { ooo_min: 5 };
        let mut s = series();
        for t in [10, 20, 30] {
            s.append(t, t as f64, &o, b);
        }
        assert_eq!(s.append(25, 25.0, &o, b), Appended::OutOfOrder);
        assert_eq!(s.append(25, 25.0, &o, b), Appended::Duplicate);
        assert_eq!(s.append(20, 20.0, &o, b), Appended::Duplicate);
        assert_eq!(
            s.append(20, 9.0, &o, b),
            Appended::RefusedDuplicateTimestamp
        );
        assert_eq!(s.append(4, 4.0, &o, b), Appended::RefusedTooOld);
        assert_eq!(s.append(6, 6.0, &o, b), Appended::OutOfOrder);
        assert_eq!(
            all(&s),
            vec![(6, 6.0), (10, 10.0), (20, 20.0), (25, 25.0), (30, 30.0)]
        );
        let chunks = s.block_chunks(0, 100, &o);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].min_time, 6);
        assert_eq!(chunks[0].max_time, 30);
    }

    #[test]
    fn block_chunks_reuse_the_head_chunks_and_truncation_drops_them() {
        let o = CutOptions {
            chunk_range_ms: 1000,
            ..CutOptions::default()
        };
        let mut s = series();
        for t in (0..3000).step_by(10) {
            s.append(t, t as f64, &o, NO_OOO);
        }
        let first = s.block_chunks(0, 1000, &o);
        assert!(!first.is_empty());
        assert!(first.iter().all(|c| c.min_time >= 0 && c.max_time < 1000));
        let n: usize = first
            .iter()
            .map(|c| u16::from_be_bytes([c.data[0], c.data[1]]) as usize)
            .sum();
        assert_eq!(n, 100);
        assert!(s.truncate_before(1000));
        assert_eq!(all(&s).first(), Some(&(1000, 1000.0)));
        assert_eq!(s.min_time(), Some(1000));
        assert!(!s.truncate_before(5000));
    }
}
