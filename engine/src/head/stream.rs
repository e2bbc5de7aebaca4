//! The head's series handed out in batches, in label order: each core sorts the ids of its
//! matching series once, in place, and the stream then reads them [`FETCH_SERIES`] at a time
//! from each core and merges the cores' runs. A selection over the whole head so holds the
//! samples of a few hundred series per core at a time, not of every series it matches, and
//! what it holds is reserved from the process's memory budget ([`crate::budget`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;

use super::{Head, HeadRuntime, canceled};
use crate::block::histogram_cut::CutHistogramChunk;
use crate::budget::{MemoryBudget, Reservation};
use crate::chunk::{HistogramBatch, SampleBatch};
use crate::error::Result;
use crate::labels::{Labels, Matcher};
use crate::query::{
    BATCH_SERIES, Cancel, Selection, SeriesChunk, SeriesData, SeriesStream, StreamSeries,
};
use crate::shard::Canceled;
use crate::shard::back_lane;
use crate::store::encode_batch;

/// Series a core reads for a stream in one call.
pub const FETCH_SERIES: usize = 256;

/// How much of each series a head stream hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRead {
    /// Labels only, for every series with a chunk overlapping the range (the series API, a
    /// Series call that skips chunks).
    Labels,
    /// Float and native histogram samples in the range, decoded (PromQL).
    Samples,
    /// Float samples in the range as XOR chunks of at most 120 samples, native histograms in
    /// the chunks they were stored in ([`super::histograms`]): what the StoreAPI serves.
    Stored,
}

/// One series as a core reads it for a stream.
#[derive(Debug)]
pub(crate) struct ReadSeries {
    pub labels: Labels,
    pub samples: SampleBatch,
    pub histograms: HistogramBatch,
    pub histogram_chunks: Vec<CutHistogramChunk>,
}

/// Bytes a decoded native histogram takes, about: its struct and a few spans and buckets.
const HISTOGRAM_BYTES: u64 = 256;

impl ReadSeries {
    /// Bytes it holds, about.
    fn bytes(&self) -> u64 {
        let labels: usize = self
            .labels
            .iter()
            .map(|l| 48 + l.name.len() + l.value.len())
            .sum();
        let chunks: usize = self
            .histogram_chunks
            .iter()
            .map(|c| 40 + c.data.len())
            .sum();
        (64 + labels + chunks + self.samples.len() * 16) as u64
            + self.histograms.len() as u64 * HISTOGRAM_BYTES
    }

    fn into_stream(self, read: HeadRead) -> StreamSeries {
        let data = match read {
            HeadRead::Stored => {
                let mut chunks: Vec<SeriesChunk> = encode_batch(&self.samples)
                    .into_iter()
                    .map(SeriesChunk::from)
                    .collect();
                chunks.extend(self.histogram_chunks.into_iter().map(|c| SeriesChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding as u8,
                    data: Bytes::from(c.data),
                }));
                chunks.sort_by_key(|c| c.min_time);
                SeriesData::Chunks(chunks)
            }
            HeadRead::Labels | HeadRead::Samples if self.histograms.is_empty() => {
                SeriesData::Decoded(self.samples)
            }
            HeadRead::Labels | HeadRead::Samples => {
                SeriesData::DecodedWithHistograms(self.samples, self.histograms)
            }
        };
        StreamSeries {
            labels: self.labels,
            data,
        }
    }
}

/// One core's part of a stream: its matching series in label order, how far they have been
/// read, and what was read and not yet handed out.
#[derive(Debug)]
struct CoreRun {
    picked: Vec<(u32, u64)>,
    next: usize,
    buf: VecDeque<ReadSeries>,
}

/// A head's selection as a [`SeriesStream`], in label order.
#[derive(Debug)]
pub struct HeadStream {
    rt: Arc<HeadRuntime>,
    slot: usize,
    mint: i64,
    maxt: i64,
    read: HeadRead,
    cores: Vec<CoreRun>,
    /// Bytes of the series read and not yet handed out.
    buffered: u64,
    /// Bytes of the last batch handed out, until the next call: the caller's while it works
    /// on it.
    handed: u64,
    /// Covers the id lists, what is buffered and the last batch handed out.
    reservation: Reservation,
    /// The query's token: once it ends, no more series are read, and reads already queued on
    /// a core are skipped there (a query whose client left must not keep the cores busy).
    cancel: Cancel,
}

impl Head {
    /// The series matching `matchers` with data in `[mint, maxt]`, in label order, read as
    /// `read` asks, a batch at a time. Blocking. Fails when the id lists alone do not fit in
    /// the memory budget.
    pub fn stream(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        read: HeadRead,
    ) -> Result<HeadStream> {
        self.stream_in(matchers, mint, maxt, read, &self.opts.budget)
    }

    /// [`Self::stream`], with what the stream holds reserved from `budget` rather than from
    /// the head's own: a reader that is not the head's writer (`all`'s PromQL) reads within
    /// its own part of the process's memory.
    pub fn stream_in(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        read: HeadRead,
        budget: &Arc<MemoryBudget>,
    ) -> Result<HeadStream> {
        let one = Selection {
            matchers: matchers.to_vec(),
            mint,
            maxt,
        };
        let mut streams = self.stream_many_in(vec![one], read, budget)?;
        streams.pop().ok_or_else(|| canceled(Canceled))
    }

    /// A stream for each of `selections`, in their order, opened in one visit to each core:
    /// what [`Self::stream_in`] does for one, for a caller that knows its next selections (a
    /// ruler's group). A visit costs thread hand-offs that take longer than reading a
    /// rule's few series.
    pub fn stream_many_in(
        &self,
        selections: Vec<Selection>,
        read: HeadRead,
        budget: &Arc<MemoryBudget>,
    ) -> Result<Vec<HeadStream>> {
        let slot = self.slot;
        let sels = Arc::new(selections);
        let calls: Vec<_> = (0..self.rt.cores())
            .map(|core| {
                let sels = sels.clone();
                self.rt.cores.call(core, move |c| async move {
                    let mut runs = Vec::with_capacity(sels.len());
                    for sel in sels.iter() {
                        runs.push(core_run(&c, slot, sel, read).await);
                    }
                    runs
                })
            })
            .collect();
        let mut per_core = futures::executor::block_on(join_all(calls))
            .into_iter()
            .map(|r| r.map(Vec::into_iter).map_err(canceled))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(sels.len());
        for sel in sels.iter() {
            let cores = per_core
                .iter_mut()
                .map(|runs| runs.next().ok_or_else(|| canceled(Canceled)))
                .collect::<Result<Vec<_>>>()?;
            let mut stream = HeadStream {
                rt: self.rt.clone(),
                slot,
                mint: sel.mint,
                maxt: sel.maxt,
                read,
                cores,
                buffered: 0,
                handed: 0,
                reservation: budget.empty("head selection"),
                cancel: Cancel::never(),
            };
            stream.buffered = stream
                .cores
                .iter()
                .flat_map(|c| c.buf.iter())
                .map(ReadSeries::bytes)
                .sum();
            stream
                .reservation
                .cover(stream.ids_bytes() + stream.buffered)?;
            out.push(stream);
        }
        Ok(out)
    }
}

/// One core's part of selection `sel`: its matching series in label order, read at once when
/// they fit one read.
async fn core_run(
    c: &crate::shard::Core<super::HeadCore>,
    slot: usize,
    sel: &Selection,
    read: HeadRead,
) -> CoreRun {
    let (mint, maxt) = (sel.mint, sel.maxt);
    let picked = c
        .state()
        .with(slot, |s| s.matching_refs(&sel.matchers, mint, maxt));
    if picked.len() > FETCH_SERIES {
        // Sorting thousands of series takes milliseconds: small selections queued behind this
        // one go first.
        back_lane().await;
        return CoreRun {
            picked: c.state().with(slot, |s| s.sort_by_labels(picked)),
            next: 0,
            buf: VecDeque::new(),
        };
    }
    // A selection that fits one read is read in the same visit to the core: a rule's or a
    // dashboard's few series cost one hand-off, not two.
    c.state().with(slot, |s| {
        let picked = s.sort_by_labels(picked);
        CoreRun {
            buf: s.read(&picked, mint, maxt, read).into(),
            next: picked.len(),
            picked,
        }
    })
}

impl HeadStream {
    /// How much of each series it hands over.
    pub fn read(&self) -> HeadRead {
        self.read
    }

    /// Ends the stream with the query whose token `cancel` is: reads not yet made are not
    /// made, and [`SeriesStream::next_batch`] answers the interruption.
    pub fn cancel_with(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Reads the next [`FETCH_SERIES`] series of each core in `which`, all at once.
    fn fetch(&mut self, which: &[usize]) -> Result<()> {
        let (slot, mint, maxt, read) = (self.slot, self.mint, self.maxt, self.read);
        // A selection of more series than one read takes is a big one: its reads wait behind
        // the small selections' on each core.
        let big = self.cores.iter().map(|c| c.picked.len()).sum::<usize>() > FETCH_SERIES;
        let calls: Vec<_> = which
            .iter()
            .map(|&core| {
                let run = &mut self.cores[core];
                let end = (run.next + FETCH_SERIES).min(run.picked.len());
                let ids = run.picked[run.next..end].to_vec();
                run.next = end;
                let cancel = self.cancel.clone();
                self.rt.cores.call(core, move |c| async move {
                    // Queued behind other reads, this one may run after its query ended.
                    if big {
                        back_lane().await;
                    }
                    if cancel.interrupted().is_some() {
                        return Vec::new();
                    }
                    c.state().with(slot, |s| s.read(&ids, mint, maxt, read))
                })
            })
            .collect();
        let answers = futures::executor::block_on(join_all(calls));
        self.cancel.check()?;
        for (&core, got) in which.iter().zip(answers) {
            let got = got.map_err(canceled)?;
            self.buffered += got.iter().map(ReadSeries::bytes).sum::<u64>();
            self.cores[core].buf.extend(got);
        }
        self.reservation
            .cover(self.ids_bytes() + self.buffered + self.handed)?;
        Ok(())
    }

    fn ids_bytes(&self) -> u64 {
        self.cores.iter().map(|c| c.picked.len() as u64 * 16).sum()
    }
}

impl SeriesStream for HeadStream {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        self.handed = 0;
        self.cancel.check()?;
        let mut out = Vec::new();
        while out.len() < BATCH_SERIES {
            let dry: Vec<usize> = (0..self.cores.len())
                .filter(|&i| {
                    let c = &self.cores[i];
                    c.buf.is_empty() && c.next < c.picked.len()
                })
                .collect();
            if !dry.is_empty() {
                self.fetch(&dry)?;
                continue;
            }
            // Each core holds other series than the others (a series lives on the core its
            // labels hash to), so the smallest front is the next series overall.
            let Some(core) = (0..self.cores.len())
                .filter(|&i| !self.cores[i].buf.is_empty())
                .min_by(|&a, &b| {
                    let la = &self.cores[a].buf[0].labels;
                    la.cmp(&self.cores[b].buf[0].labels)
                })
            else {
                break;
            };
            if let Some(s) = self.cores[core].buf.pop_front() {
                let bytes = s.bytes();
                self.buffered -= bytes;
                self.handed += bytes;
                out.push(s.into_stream(self.read));
            }
        }
        if out.is_empty() {
            self.reservation.shrink(self.reservation.bytes());
            return Ok(None);
        }
        self.reservation
            .cover(self.ids_bytes() + self.buffered + self.handed)?;
        Ok(Some(out))
    }
}
