//! [`Queryable`] over the blocks in a local directory.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    BATCH_CHUNKS, BATCH_SERIES, Queryable, SelectHints, Series, SeriesChunk, SeriesData,
    SeriesStream, StreamSeries, merge_samples,
};
use crate::block::{Block, block_dirs};
use crate::chunk::{HistogramBatch, SampleBatch};
use crate::error::Result;
use crate::index::ChunkMeta;
use crate::labels::{Label, Labels, Matcher};

/// The blocks of one directory, opened once. Series with the same labels in several blocks
/// are merged.
#[derive(Debug)]
pub struct LocalBlocks {
    blocks: Vec<Block>,
}

impl LocalBlocks {
    /// Opens every block under `dir` (or `dir` itself when it is a block).
    pub fn open(dir: &Path) -> Result<Self> {
        let blocks = block_dirs(dir)?
            .iter()
            .map(|d| Block::open(d))
            .collect::<Result<Vec<_>>>()?;
        Ok(LocalBlocks { blocks })
    }

    /// The blocks given, already open (a caller choosing which directories are blocks).
    pub fn from_blocks(blocks: Vec<Block>) -> Self {
        LocalBlocks { blocks }
    }

    /// The open blocks, in directory-name order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Blocks whose `[min_time, max_time)` overlaps `[mint, maxt]`.
    fn overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &Block> {
        self.blocks
            .iter()
            .filter(move |b| b.meta().min_time <= maxt && b.meta().max_time > mint)
    }

    /// Whether any block holds a series with a label named `name`.
    pub fn has_label_name(&self, name: &str) -> bool {
        self.blocks
            .iter()
            .any(|b| b.index().label_names().iter().any(|n| n == name))
    }

    /// [`Queryable::select_stream`] holding the blocks itself, so that the stream may outlive
    /// the caller's borrow (be handed to another thread, or kept by a source that made it).
    pub fn stream(
        self: &Arc<Self>,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Box<dyn SeriesStream + 'static>> {
        Ok(Box::new(LocalStream::start(
            self.clone(),
            matchers,
            mint,
            maxt,
        )?))
    }

    /// Label sets of the matching series that have a chunk in range, with the block index.
    fn matching_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        let mut out = Vec::new();
        let mut labels: Vec<Label> = Vec::new();
        let mut chunks: Vec<ChunkMeta> = Vec::new();
        for b in self.overlapping(mint, maxt) {
            for r in b.select(matchers)? {
                b.series(r, &mut labels, &mut chunks)?;
                if chunks
                    .iter()
                    .any(|c| c.max_time >= mint && c.min_time <= maxt)
                {
                    out.push(Labels::from_sorted(labels.clone()));
                }
            }
        }
        Ok(out)
    }
}

impl Queryable for LocalBlocks {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        // The series API wants labels only: no chunk is read for it.
        if hints.func.as_deref() == Some("series") {
            return Ok(self
                .matching_labels(matchers, mint, maxt)?
                .into_iter()
                .map(|l| Series::floats(l, SampleBatch::new()))
                .collect());
        }
        type Parts = (Vec<SampleBatch>, Vec<HistogramBatch>);
        let mut by_labels: BTreeMap<Labels, Parts> = BTreeMap::new();
        let mut labels: Vec<Label> = Vec::new();
        let mut chunks: Vec<ChunkMeta> = Vec::new();
        for b in self.overlapping(mint, maxt) {
            for r in b.select(matchers)? {
                b.series(r, &mut labels, &mut chunks)?;
                let mut batch = SampleBatch::new();
                let mut hists = HistogramBatch::new();
                b.read_samples_and_histograms(r, &chunks, mint, maxt, &mut batch, &mut hists)?;
                if !batch.is_empty() || !hists.is_empty() {
                    let e = by_labels
                        .entry(Labels::from_sorted(labels.clone()))
                        .or_default();
                    e.0.push(batch);
                    e.1.push(hists);
                }
            }
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, (floats, hists))| {
                let samples = if floats.len() == 1 {
                    floats.into_iter().next().unwrap_or_default()
                } else {
                    merge_samples(&floats.iter().collect::<Vec<_>>())
                };
                let histograms = if hists.len() == 1 {
                    hists.into_iter().next().unwrap_or_default()
                } else {
                    HistogramBatch::merge(&hists.iter().collect::<Vec<_>>())
                };
                Series {
                    labels,
                    samples,
                    histograms,
                }
            })
            .collect())
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        Ok(Box::new(LocalStream::start(self, matchers, mint, maxt)?))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .matching_labels(matchers, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.to_string()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values: Vec<String> = self
            .matching_labels(matchers, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// Where one block's selection stands: the block (its index in [`LocalBlocks::blocks`]), its
/// series refs (ascending, so in label order) and the next one to read.
struct Cursor {
    block: usize,
    refs: Vec<u32>,
    pos: usize,
}

/// The next series of one block, waiting in the merge.
struct Head {
    labels: Labels,
    chunks: Vec<ChunkMeta>,
    series_ref: u32,
    cursor: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.labels
            .cmp(&other.labels)
            .then(self.cursor.cmp(&other.cursor))
    }
}

/// The blocks' selections merged by labels: every block hands out its series in label order,
/// so a heap of each block's next series yields the union in label order, equal label sets
/// from several blocks together. `B` is the blocks, borrowed or shared.
struct LocalStream<B> {
    src: B,
    cursors: Vec<Cursor>,
    heap: BinaryHeap<Reverse<Head>>,
    mint: i64,
    maxt: i64,
    labels: Vec<Label>,
}

impl<B: std::ops::Deref<Target = LocalBlocks>> LocalStream<B> {
    fn start(src: B, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Self> {
        let mut cursors = Vec::new();
        for (i, b) in src.blocks.iter().enumerate() {
            if b.meta().min_time <= maxt && b.meta().max_time > mint {
                cursors.push(Cursor {
                    block: i,
                    refs: b.select(matchers)?,
                    pos: 0,
                });
            }
        }
        let mut st = LocalStream {
            src,
            cursors,
            heap: BinaryHeap::new(),
            mint,
            maxt,
            labels: Vec::new(),
        };
        for i in 0..st.cursors.len() {
            st.advance(i)?;
        }
        Ok(st)
    }

    fn block(&self, cursor: usize) -> &Block {
        &self.src.blocks[self.cursors[cursor].block]
    }

    /// Reads cursor `i`'s next series with a chunk in range into the heap.
    fn advance(&mut self, i: usize) -> Result<()> {
        let c = &mut self.cursors[i];
        let block = &self.src.blocks[c.block];
        while let Some(&r) = c.refs.get(c.pos) {
            c.pos += 1;
            let mut chunks = Vec::new();
            block.series(r, &mut self.labels, &mut chunks)?;
            chunks.retain(|m| m.max_time >= self.mint && m.min_time <= self.maxt);
            if !chunks.is_empty() {
                self.heap.push(Reverse(Head {
                    labels: Labels::from_sorted(std::mem::take(&mut self.labels)),
                    chunks,
                    series_ref: r,
                    cursor: i,
                }));
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A series of the batch being built: its chunks as ranges of the batch's byte buffer.
enum Pending {
    Chunks(Labels, Vec<(i64, i64, u8, Range<usize>)>),
    Decoded(Labels, SampleBatch, HistogramBatch),
}

impl<B: std::ops::Deref<Target = LocalBlocks> + Send> SeriesStream for LocalStream<B> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        let mut pending: Vec<Pending> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut nchunks = 0;
        while pending.len() < BATCH_SERIES && nchunks < BATCH_CHUNKS {
            let Some(Reverse(first)) = self.heap.pop() else {
                break;
            };
            let mut parts = vec![first];
            while self
                .heap
                .peek()
                .is_some_and(|Reverse(h)| h.labels == parts[0].labels)
            {
                if let Some(Reverse(h)) = self.heap.pop() {
                    parts.push(h);
                }
            }
            for p in &parts {
                self.advance(p.cursor)?;
            }
            // Deleted samples are removed while decoding, as `select` does.
            let deleted = parts.iter().any(|p| {
                !self
                    .block(p.cursor)
                    .tombstones()
                    .get(u64::from(p.series_ref))
                    .is_empty()
            });
            // Nothing below reads the parts' labels again.
            let labels = std::mem::take(&mut parts[0].labels);
            if deleted {
                let mut decoded = Vec::with_capacity(parts.len());
                let mut hists = Vec::with_capacity(parts.len());
                for p in &parts {
                    let mut b = SampleBatch::new();
                    let mut h = HistogramBatch::new();
                    self.block(p.cursor).read_samples_and_histograms(
                        p.series_ref,
                        &p.chunks,
                        self.mint,
                        self.maxt,
                        &mut b,
                        &mut h,
                    )?;
                    decoded.push(b);
                    hists.push(h);
                }
                let merged = merge_samples(&decoded.iter().collect::<Vec<_>>());
                let hists = HistogramBatch::merge(&hists.iter().collect::<Vec<_>>());
                if !merged.is_empty() || !hists.is_empty() {
                    pending.push(Pending::Decoded(labels, merged, hists));
                }
                continue;
            }
            let mut chunks = Vec::new();
            for p in &parts {
                let block = self.block(p.cursor);
                for m in &p.chunks {
                    let (enc, data) = block.chunks().chunk(m.chunk_ref)?;
                    let at = buf.len();
                    buf.extend_from_slice(data);
                    chunks.push((m.min_time, m.max_time, enc, at..buf.len()));
                }
            }
            nchunks += chunks.len();
            pending.push(Pending::Chunks(labels, chunks));
        }
        if pending.is_empty() {
            return Ok(None);
        }
        // One buffer per batch: every chunk is a slice of it, no allocation per chunk.
        let buf = Bytes::from(buf);
        Ok(Some(
            pending
                .into_iter()
                .map(|p| match p {
                    Pending::Decoded(labels, b, h) if h.is_empty() => StreamSeries {
                        labels,
                        data: SeriesData::Decoded(b),
                    },
                    Pending::Decoded(labels, b, h) => StreamSeries {
                        labels,
                        data: SeriesData::DecodedWithHistograms(b, h),
                    },
                    Pending::Chunks(labels, cs) => StreamSeries {
                        labels,
                        data: SeriesData::Chunks(
                            cs.into_iter()
                                .map(|(min_time, max_time, encoding, r)| SeriesChunk {
                                    min_time,
                                    max_time,
                                    encoding,
                                    data: buf.slice(r),
                                })
                                .collect(),
                        ),
                    },
                })
                .collect(),
        ))
    }
}
