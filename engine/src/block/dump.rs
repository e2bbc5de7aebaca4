//! Prints the samples of one or more blocks exactly as `promtool tsdb dump` does: one line per
//! sample, `{labels} value timestamp_ms` with the value as Go's `%g` prints it (a native
//! histogram as Prometheus's `Histogram.String()` / `FloatHistogram.String()`, see
//! [`super::histogram_text`]), series in label order, samples of a series merged across blocks
//! in time order.
//!
//! For series holding native histograms, promtool 3.5's dump reads each series with three
//! loops in turn (floats, then float histograms, then integer histograms), each starting with
//! a step of the iterator that the loop before already took: the sample that ends one loop is
//! never printed, and samples of a kind whose loop has passed are not printed either. An
//! integer-histogram series thus loses its first two samples, a float-histogram one its first.
//! Gauntlet prints the same lines, so that dumps of the two compare byte for byte.

use std::io::Write;

use super::histogram_text::{push_float_histogram, push_histogram};
use super::reader::{Block, BlockSample};
use crate::chunk::SampleBatch;
use crate::error::{Error, Result};
use crate::go_format::{FloatFormat, push_float};
use crate::index::ChunkMeta;
use crate::index::postings::union_many;
use crate::labels::{Label, Labels, Matcher};

/// What to print.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Selectors, each a list of matchers that must all match; a series matching any selector
    /// is printed. Empty selects every series.
    pub selectors: Vec<Vec<Matcher>>,
    /// First timestamp to print, ms, inclusive.
    pub min_time: i64,
    /// Last timestamp to print, ms, inclusive.
    pub max_time: i64,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            selectors: Vec::new(),
            min_time: i64::MIN,
            max_time: i64::MAX,
        }
    }
}

/// Counts of what a dump printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DumpStats {
    /// Series printed.
    pub series: u64,
    /// Sample lines printed.
    pub samples: u64,
}

/// One block's selected series, read lazily in ref (= label) order.
struct Cursor<'a> {
    block: &'a Block,
    refs: Vec<u32>,
    pos: usize,
    labels: Option<Labels>,
    chunks: Vec<ChunkMeta>,
}

impl Cursor<'_> {
    fn advance(&mut self, scratch: &mut Vec<Label>) -> Result<()> {
        self.labels = None;
        if let Some(&r) = self.refs.get(self.pos) {
            self.pos += 1;
            scratch.clear();
            self.block.series(r, scratch, &mut self.chunks)?;
            self.labels = Some(Labels::from_sorted(std::mem::take(scratch)));
        }
        Ok(())
    }

    fn current_ref(&self) -> u32 {
        self.refs[self.pos - 1]
    }
}

/// Writes the dump of `blocks` to `out`.
pub fn dump(blocks: &[Block], opts: &DumpOptions, out: &mut impl Write) -> Result<DumpStats> {
    let mut cursors = Vec::with_capacity(blocks.len());
    let mut scratch = Vec::new();
    for b in blocks {
        // Block time ranges are half-open.
        if b.meta().max_time <= opts.min_time || b.meta().min_time > opts.max_time {
            continue;
        }
        let mut refs = Vec::new();
        if opts.selectors.is_empty() {
            b.index().all_postings(&mut refs)?;
        } else {
            let sets = opts
                .selectors
                .iter()
                .map(|m| b.select(m))
                .collect::<Result<Vec<_>>>()?;
            let lists: Vec<&[u32]> = sets.iter().map(Vec::as_slice).collect();
            union_many(&lists, &mut refs);
        }
        let mut c = Cursor {
            block: b,
            refs,
            pos: 0,
            labels: None,
            chunks: Vec::new(),
        };
        c.advance(&mut scratch)?;
        cursors.push(c);
    }

    let mut stats = DumpStats::default();
    let mut batch = SampleBatch::new();
    let mut merged = SampleBatch::new();
    let mut line = String::with_capacity(256);
    let io = |e: std::io::Error| Error::Io {
        path: "<output>".into(),
        source: e,
    };
    while let Some(min) = cursors
        .iter()
        .filter_map(|c| c.labels.as_ref())
        .min()
        .cloned()
    {
        let parts: Vec<usize> = (0..cursors.len())
            .filter(|&i| cursors[i].labels.as_ref() == Some(&min))
            .collect();
        let typed = parts
            .iter()
            .any(|&i| cursors[i].block.has_histogram_chunks(&cursors[i].chunks));
        let prefix = min.to_string();
        if typed {
            let mut all: Vec<(i64, BlockSample)> = Vec::new();
            for &i in &parts {
                let c = &mut cursors[i];
                let mut one = Vec::new();
                c.block.read_typed(
                    c.current_ref(),
                    &c.chunks,
                    opts.min_time,
                    opts.max_time,
                    &mut one,
                )?;
                all = merge_typed(all, one);
                c.advance(&mut scratch)?;
            }
            if all.is_empty() {
                continue;
            }
            stats.series += 1;
            for (t, s) in printed_as_promtool(&all) {
                line.clear();
                line.push_str(&prefix);
                line.push(' ');
                match s {
                    BlockSample::Float(v) => push_float(&mut line, *v, FloatFormat::G),
                    BlockSample::Histogram(h) => push_histogram(&mut line, h),
                    BlockSample::FloatHistogram(h) => push_float_histogram(&mut line, h),
                }
                line.push(' ');
                line.push_str(itoa::Buffer::new().format(*t));
                line.push('\n');
                out.write_all(line.as_bytes()).map_err(io)?;
                stats.samples += 1;
            }
            continue;
        }
        merged.clear();
        for (sources, &i) in parts.iter().enumerate() {
            let c = &mut cursors[i];
            batch.clear();
            c.block.read_samples(
                c.current_ref(),
                &c.chunks,
                opts.min_time,
                opts.max_time,
                &mut batch,
            )?;
            if sources == 0 {
                std::mem::swap(&mut merged, &mut batch);
            } else {
                merge_into(&mut merged, &batch);
            }
            c.advance(&mut scratch)?;
        }
        if merged.is_empty() {
            continue;
        }
        stats.series += 1;
        for (&t, &v) in merged.ts.iter().zip(&merged.val) {
            line.clear();
            line.push_str(&prefix);
            line.push(' ');
            push_float(&mut line, v, FloatFormat::G);
            line.push(' ');
            line.push_str(itoa::Buffer::new().format(t));
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(io)?;
        }
        stats.samples += merged.len() as u64;
    }
    out.flush().map_err(io)?;
    Ok(stats)
}

/// The samples promtool 3.5's dump prints of a series' samples `all` (see the module
/// documentation): floats up to the first other sample, then float histograms from the sample
/// after that up to the next other kind, then integer histograms from the sample after that.
fn printed_as_promtool(all: &[(i64, BlockSample)]) -> Vec<&(i64, BlockSample)> {
    let mut out = Vec::new();
    let mut i = 0;
    let kinds: [fn(&BlockSample) -> bool; 3] = [
        |s| matches!(s, BlockSample::Float(_)),
        |s| matches!(s, BlockSample::FloatHistogram(_)),
        |s| matches!(s, BlockSample::Histogram(_)),
    ];
    for (n, is_kind) in kinds.iter().enumerate() {
        if n > 0 && i < all.len() {
            // The sample that ended the loop before was taken and not printed.
            i += 1;
        }
        while i < all.len() && is_kind(&all[i].1) {
            out.push(&all[i]);
            i += 1;
        }
    }
    out
}

/// Merges two time-sorted sample lists; on equal timestamps the one in `a` (the earlier
/// block) wins, as [`merge_into`] does for floats.
fn merge_typed(a: Vec<(i64, BlockSample)>, b: Vec<(i64, BlockSample)>) -> Vec<(i64, BlockSample)> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                if x.0 == y.0 {
                    b.next();
                } else if x.0 < y.0 {
                    out.extend(a.next());
                } else {
                    out.extend(b.next());
                }
            }
            (Some(_), None) => out.extend(a.by_ref()),
            (None, Some(_)) => out.extend(b.by_ref()),
            (None, None) => break,
        }
    }
    out
}

/// Merges `other` into `into` by timestamp; on equal timestamps the sample already in `into`
/// (from the earlier block) wins, as Prometheus's chained merge keeps one of them.
fn merge_into(into: &mut SampleBatch, other: &SampleBatch) {
    if other.is_empty() {
        return;
    }
    if into.ts.last().is_none_or(|&l| l < other.ts[0]) {
        into.ts.extend_from_slice(&other.ts);
        into.val.extend_from_slice(&other.val);
        return;
    }
    let mut out = SampleBatch::with_capacity(into.len() + other.len());
    let (mut i, mut j) = (0, 0);
    while i < into.len() || j < other.len() {
        let take_a = j >= other.len() || (i < into.len() && into.ts[i] <= other.ts[j]);
        if take_a {
            if j < other.len() && other.ts[j] == into.ts[i] {
                j += 1;
            }
            out.push(into.ts[i], into.val[i]);
            i += 1;
        } else {
            out.push(other.ts[j], other.val[j]);
            j += 1;
        }
    }
    *into = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtool_skips_the_sample_ending_each_loop() {
        let f = |t| (t, BlockSample::Float(t as f64));
        let h = |t| (t, BlockSample::Histogram(Default::default()));
        let fh = |t| (t, BlockSample::FloatHistogram(Default::default()));
        let times = |v: Vec<&(i64, BlockSample)>| v.iter().map(|s| s.0).collect::<Vec<_>>();
        assert_eq!(
            times(printed_as_promtool(&[h(1), h(2), h(3), h(4)])),
            [3, 4]
        );
        assert_eq!(times(printed_as_promtool(&[fh(1), fh(2), fh(3)])), [2, 3]);
        assert_eq!(
            times(printed_as_promtool(&[f(1), f(2), h(3), h(4), h(5)])),
            [1, 2, 5]
        );
        assert_eq!(
            times(printed_as_promtool(&[f(1), fh(2), fh(3), h(4), h(5), h(6)])),
            [1, 3, 5, 6]
        );
        assert_eq!(
            times(printed_as_promtool(&[h(1), f(2), f(3)])),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn merge_keeps_order_and_drops_duplicates() {
        let mut a = SampleBatch::new();
        for t in [1, 3, 5] {
            a.push(t, t as f64);
        }
        let mut b = SampleBatch::new();
        for t in [2, 3, 6] {
            b.push(t, -(t as f64));
        }
        merge_into(&mut a, &b);
        assert_eq!(a.ts, vec![1, 2, 3, 5, 6]);
        assert_eq!(a.val[2], 3.0);
    }
}
