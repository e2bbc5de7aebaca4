//! Prints the samples of one or more blocks exactly as `promtool tsdb dump` does: one line per
//! sample, `{labels} value timestamp_ms` with the value as Go's `%g` prints it, series in label
//! order, samples of a series merged across blocks in time order.

use std::io::Write;

use super::reader::Block;
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
        merged.clear();
        let mut sources = 0;
        for c in cursors.iter_mut() {
            if c.labels.as_ref() != Some(&min) {
                continue;
            }
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
            sources += 1;
            c.advance(&mut scratch)?;
        }
        if merged.is_empty() {
            continue;
        }
        stats.series += 1;
        let prefix = min.to_string();
        for (&t, &v) in merged.ts.iter().zip(&merged.val) {
            line.clear();
            line.push_str(&prefix);
            line.push(' ');
            push_float(&mut line, v, FloatFormat::G);
            line.push(' ');
            line.push_str(itoa_i64(t, &mut [0u8; 20]));
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(io)?;
        }
        stats.samples += merged.len() as u64;
    }
    out.flush().map_err(io)?;
    Ok(stats)
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

fn itoa_i64(v: i64, buf: &mut [u8; 20]) -> &str {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        // i64::MIN has 19 digits, so there is always room for the sign.
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_extremes() {
        let mut b = [0u8; 20];
        assert_eq!(itoa_i64(i64::MIN, &mut b), "-9223372036854775808");
        assert_eq!(itoa_i64(0, &mut b), "0");
        assert_eq!(itoa_i64(1735689600000, &mut b), "1735689600000");
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
