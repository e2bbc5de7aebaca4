//! [`Queryable`] over the bucket store, so PromQL runs over bucket blocks in-process: chunks
//! are decoded into sample batches trimmed to the range. The streaming selection reads each
//! block's series entries and chunks a batch at a time through the store's public block reads
//! and merges the blocks by labels.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use super::block::{BlockSeries, BucketBlock};
use super::labels::LabelsQuery;
use super::series::{SeriesQuery, block_matchers, served_labels};
use super::{BucketStore, Limits, StoreError};
use crate::chunk::{Encoding, SampleBatch, decode_xor_into};
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, plan_postings};
use crate::labels::{Labels, Matcher};
use crate::query::{
    BATCH_CHUNKS, BATCH_SERIES, Queryable, SelectHints, Series, SeriesChunk, SeriesData,
    SeriesStream, StreamSeries, VecStream,
};

/// Series entries read from a block at a time, ahead of the merge.
const ENTRY_WINDOW: usize = 1024;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Index(e) => Error::Index(e),
            StoreError::Block(e) => Error::Block(e),
            other => Error::InvalidInput(other.to_string()),
        }
    }
}

impl BucketStore {
    /// Runs a future on the store's runtime from a synchronous caller (a blocking thread).
    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

impl Queryable for BucketStore {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        let q = SeriesQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            abort_on_error: true,
            ..SeriesQuery::default()
        };
        let res = self.block_on(self.series(&q))?;
        let mut out = Vec::with_capacity(res.series.len());
        for s in res.series {
            let mut samples = SampleBatch::new();
            for c in &s.chunks {
                if c.encoding != Encoding::Xor as u8 {
                    return Err(Error::InvalidInput(format!(
                        "series {:?}: chunk encoding {} is not decoded by PromQL",
                        s.labels, c.encoding
                    )));
                }
                decode_xor_into(&c.data, &mut samples)
                    .map_err(|e| Error::InvalidInput(format!("series {:?}: {e}", s.labels)))?;
            }
            samples.truncate_to_range(mint, maxt);
            if !samples.is_empty() {
                out.push(Series {
                    labels: s.labels,
                    samples,
                });
            }
        }
        Ok(out)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        let blocks: Vec<Arc<BucketBlock>> = self
            .blocks()
            .into_iter()
            .filter(|b| b.resolution() == 0)
            .filter(|b| b.meta.min_time <= maxt && b.meta.max_time > mint)
            .collect();
        // Blocks hand out series in the order of their own labels. That is one order across
        // blocks only when they all attach the same external labels and none of those names
        // is also a series label; otherwise the whole answer is sorted by `select`.
        let mergeable = blocks
            .windows(2)
            .all(|w| w[0].ext_labels == w[1].ext_labels)
            && blocks.iter().all(|b| {
                b.ext_labels.is_empty()
                    || b.header
                        .reader()
                        .label_names()
                        .iter()
                        .all(|n| b.ext_labels.get(n).is_none())
            });
        if !self.is_ready() || matchers.is_empty() || mint > maxt || !mergeable {
            return Ok(Box::new(VecStream::new(
                self.select(matchers, mint, maxt, hints)?,
            )));
        }
        let mut st = BucketStream {
            store: self,
            cursors: Vec::new(),
            heap: BinaryHeap::new(),
            mint,
            maxt,
            limits: self.limits(),
            used: (0, 0, 0),
        };
        for b in blocks {
            let Some(ms) = block_matchers(&b, matchers) else {
                continue;
            };
            let plan = plan_postings(b.header.reader(), &ms).map_err(StoreError::from)?;
            let refs = self.block_on(b.postings(&plan))?;
            st.cursors.push(Cursor {
                block: b,
                refs,
                pos: 0,
                entries: VecDeque::new(),
            });
        }
        for i in 0..st.cursors.len() {
            st.advance(i)?;
        }
        Ok(Box::new(st))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let q = LabelsQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            ..LabelsQuery::default()
        };
        Ok(self.block_on(BucketStore::label_names(self, &q))?)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let q = LabelsQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            ..LabelsQuery::default()
        };
        Ok(self.block_on(BucketStore::label_values(self, name, &q))?)
    }
}

/// One block's selection: series refs (ascending, so in the order of the block's labels) and
/// the entries read ahead of the merge.
struct Cursor {
    block: Arc<BucketBlock>,
    refs: Vec<u32>,
    pos: usize,
    entries: VecDeque<BlockSeries>,
}

/// The next series of one block, waiting in the merge.
struct Head {
    labels: Labels,
    chunks: Vec<ChunkMeta>,
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

/// The chunk metas a batch reads from one block, with the (series, slot) each fills.
type BlockWants = (Vec<ChunkMeta>, Vec<(usize, usize)>);

/// The blocks merged by their labels, a batch of series (with their chunks fetched in one
/// ranged read per block) at a time.
struct BucketStream<'a> {
    store: &'a BucketStore,
    cursors: Vec<Cursor>,
    heap: BinaryHeap<Reverse<Head>>,
    mint: i64,
    maxt: i64,
    limits: Limits,
    /// Series, estimated samples and chunk bytes handed out so far, against `limits`.
    used: (u64, u64, u64),
}

impl BucketStream<'_> {
    /// Puts cursor `i`'s next series with a chunk in range into the heap.
    fn advance(&mut self, i: usize) -> Result<()> {
        loop {
            let c = &mut self.cursors[i];
            if c.entries.is_empty() {
                if c.pos >= c.refs.len() {
                    return Ok(());
                }
                let end = (c.pos + ENTRY_WINDOW).min(c.refs.len());
                let got = self.store.block_on(c.block.series(&c.refs[c.pos..end]))?;
                c.pos = end;
                c.entries.extend(got);
                continue;
            }
            let Some(mut e) = c.entries.pop_front() else {
                continue;
            };
            e.chunks
                .retain(|m| m.max_time >= self.mint && m.min_time <= self.maxt);
            if !e.chunks.is_empty() {
                self.heap.push(Reverse(Head {
                    labels: Labels::from_sorted(e.labels),
                    chunks: e.chunks,
                    cursor: i,
                }));
                return Ok(());
            }
        }
    }

    fn charge(&mut self, series: u64, chunks: u64, bytes: u64) -> Result<()> {
        let l = self.limits;
        self.used.0 += series;
        self.used.1 += chunks * 120;
        self.used.2 += bytes;
        for (limit, value, max) in [
            ("series", self.used.0, l.series),
            ("samples", self.used.1, l.samples),
            ("bytes", self.used.2, l.bytes),
        ] {
            if max > 0 && value > max {
                return Err(StoreError::LimitExceeded { limit, value, max }.into());
            }
        }
        Ok(())
    }
}

impl SeriesStream for BucketStream<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        // (labels of the first block holding it, chunk slots per block) per series, and the
        // metas each block must read, with the (series, slot) each read fills.
        let mut series: Vec<(Labels, usize, Vec<Option<SeriesChunk>>)> = Vec::new();
        let mut wants: Vec<BlockWants> = (0..self.cursors.len())
            .map(|_| Default::default())
            .collect();
        let mut nchunks = 0;
        while series.len() < BATCH_SERIES && nchunks < BATCH_CHUNKS {
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
            let si = series.len();
            let mut slots = 0;
            for p in &parts {
                let w = &mut wants[p.cursor];
                for m in &p.chunks {
                    w.0.push(*m);
                    w.1.push((si, slots));
                    slots += 1;
                }
            }
            nchunks += slots;
            let first = parts.swap_remove(0);
            series.push((first.labels, first.cursor, vec![None; slots]));
        }
        if series.is_empty() {
            return Ok(None);
        }
        let reads = wants
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.0.is_empty())
            .map(|(i, w)| (i, self.cursors[i].block.clone(), w.0.clone()));
        let fetched = self.store.block_on(futures::future::try_join_all(
            reads.map(|(i, b, metas)| async move { b.chunks(&metas).await.map(|c| (i, c)) }),
        ))?;
        let mut bytes = 0u64;
        for (i, chunks) in fetched {
            for (c, &(si, slot)) in chunks.into_iter().zip(&wants[i].1) {
                bytes += c.data.len() as u64;
                series[si].2[slot] = Some(SeriesChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding,
                    data: c.data,
                });
            }
        }
        self.charge(series.len() as u64, nchunks as u64, bytes)?;
        let out = series
            .into_iter()
            .map(|(labels, cursor, slots)| {
                let mut chunks: Vec<SeriesChunk> = slots.into_iter().flatten().collect();
                // As the Series call orders them: by time, so on overlap the later wins.
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
                let block = &self.cursors[cursor].block;
                StreamSeries {
                    labels: if block.ext_labels.is_empty() {
                        labels
                    } else {
                        served_labels(block, labels.into_vec(), &[])
                    },
                    data: SeriesData::Chunks(chunks),
                }
            })
            .collect();
        Ok(Some(out))
    }
}
