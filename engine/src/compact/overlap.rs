//! The chunks of a series holding native histograms, merged as Prometheus's compactor merges
//! them (its compacting chunk-series merger over a chain of samples, then its series-to-chunk
//! encoder), so that a block Gauntlet compacts holds the chunks Prometheus's would:
//!
//! - chunks are taken in order of (min time, max time) across the inputs; a chunk that overlaps
//!   none taken with it is kept as it is, byte for byte;
//! - chunks that overlap are decoded and chained, one sample per timestamp; a sample coming
//!   from another chunk than the sample before it loses what its chunk said about counter
//!   resets (`NotCounterReset` becomes `Unknown`; for float histograms any counter hint does),
//!   since the two chunks need not follow each other;
//! - the chained samples are encoded again: a new chunk whenever the sample type changes (float,
//!   integer histogram, float histogram) or after 120 samples, and whenever the histogram
//!   appender asks for one (a counter reset, a new schema or zero threshold, gauge against
//!   counter). A new chunk's counter-reset header comes from its first sample's hint alone
//!   (`CounterReset` or gauge; otherwise `Unknown`), as the encoder has no chunk to compare
//!   with. Chunks encoded this way go back among the chunks still to be taken, so a later chunk
//!   that overlaps them is merged in turn;
//! - a chunk that a deletion touches is first written again without the deleted samples, its
//!   header left `Unknown` (gauge chunks stay gauge).
//!
//! Prometheus chooses among equal chunks and equal timestamps through Go's heap; the same heap
//! discipline is used here, so the same inputs in the same order give the same chunks.
//!
//! Replicas deduplicated with Thanos's penalty algorithm are merged the same way, chunk group
//! by chunk group, floats as well as histograms, as Thanos's compactor merges them
//! ([`penalty_dedup_series_chunks`]).

use crate::block::Interval;
use crate::chunk::{
    ChunkError, Encoding, FloatHistogramAppender, FloatHistogramIterator, HistogramAppend,
    HistogramAppender, HistogramIterator, XorAppender, XorIterator,
};
use crate::histogram::{CounterResetHint, FloatHistogram, Histogram};

/// Samples per chunk when chained samples are encoded again.
pub const SAMPLES_PER_ENCODED_CHUNK: usize = 120;

/// One chunk of a series as the merge holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesChunk {
    /// The encoding byte ([`Encoding::Xor`], [`Encoding::Histogram`] or
    /// [`Encoding::FloatHistogram`]).
    pub encoding: u8,
    /// First sample's timestamp, ms.
    pub min_time: i64,
    /// Last sample's timestamp, ms.
    pub max_time: i64,
    /// The payload.
    pub data: Vec<u8>,
}

/// One decoded sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A float sample.
    Float(f64),
    /// An integer histogram, its hint as the chunk reader reports it.
    Int(Histogram),
    /// A float histogram, its hint as the chunk reader reports it.
    FloatHist(FloatHistogram),
}

impl Value {
    fn encoding(&self) -> Encoding {
        match self {
            Value::Float(_) => Encoding::Xor,
            Value::Int(_) => Encoding::Histogram,
            Value::FloatHist(_) => Encoding::FloatHistogram,
        }
    }
}

/// Every sample of a chunk, in order, with the counter-reset hints a reader reports.
pub fn decode_chunk(encoding: u8, data: &[u8]) -> Result<Vec<(i64, Value)>, ChunkError> {
    let mut out = Vec::new();
    match Encoding::try_from(encoding)? {
        Encoding::Xor => {
            let mut it = XorIterator::new(data)?;
            while let Some((t, v)) = it.next()? {
                out.push((t, Value::Float(v)));
            }
        }
        Encoding::Histogram => {
            let mut it = HistogramIterator::new(data)?;
            while let Some((t, h)) = it.next()? {
                out.push((t, Value::Int(h)));
            }
        }
        Encoding::FloatHistogram => {
            let mut it = FloatHistogramIterator::new(data)?;
            while let Some((t, h)) = it.next()? {
                out.push((t, Value::FloatHist(h)));
            }
        }
        other => return Err(ChunkError::UnknownEncoding { byte: other as u8 }),
    }
    Ok(out)
}

/// Samples of a chunk of encoding 1, 2 or 3, walking its whole bit stream (so a payload that
/// does not decode is found) without building the histograms.
pub fn count_samples(encoding: u8, data: &[u8]) -> Result<u64, ChunkError> {
    let mut n = 0u64;
    match Encoding::try_from(encoding)? {
        Encoding::Xor => {
            let mut it = XorIterator::new(data)?;
            while it.next()?.is_some() {
                n += 1;
            }
        }
        Encoding::Histogram => {
            let mut it = HistogramIterator::new(data)?;
            while it.next_sample()?.is_some() {
                n += 1;
            }
        }
        Encoding::FloatHistogram => {
            let mut it = FloatHistogramIterator::new(data)?;
            while it.next_sample()?.is_some() {
                n += 1;
            }
        }
        other => return Err(ChunkError::UnknownEncoding { byte: other as u8 }),
    }
    Ok(n)
}

/// `chunk` without the samples inside `deleted`: the chunk itself when none is, nothing when
/// all are, else the rest written afresh in a chunk of the same encoding (two, should the
/// appender ask for a new one, which the rest of a valid chunk never does).
pub fn apply_deletions(
    chunk: SeriesChunk,
    deleted: &[Interval],
) -> Result<Vec<SeriesChunk>, ChunkError> {
    let touched = deleted
        .iter()
        .any(|iv| iv.mint <= chunk.max_time && iv.maxt >= chunk.min_time);
    if !touched {
        return Ok(vec![chunk]);
    }
    let mut enc = Encoder::default();
    for (t, v) in decode_chunk(chunk.encoding, &chunk.data)? {
        if !deleted.iter().any(|iv| iv.mint <= t && t <= iv.maxt) {
            enc.append_unsplit(t, v)?;
        }
    }
    Ok(enc.finish())
}

/// How the samples of a chunk and the chunks overlapping it are joined.
#[derive(Debug, Clone, Copy)]
enum Join {
    /// One sample per timestamp, as Prometheus's chain iterator picks them.
    Chain,
    /// Thanos's penalty algorithm between replicas.
    Penalty,
}

/// Merges the chunks of one series from several inputs (each input's chunks in time order)
/// into chunks in time order that do not overlap, as Prometheus's compactor does.
pub fn merge_series_chunks(inputs: Vec<Vec<SeriesChunk>>) -> Result<Vec<SeriesChunk>, ChunkError> {
    merge_chunks(inputs, Join::Chain)
}

/// Deduplicates the chunks of one series from several replicas (each input's chunks in time
/// order) as Thanos's compactor does with `--deduplication.func=penalty`: chunks are taken as
/// [`merge_series_chunks`] takes them, a chunk that overlaps none taken with it is kept as it
/// is, and a chunk and those overlapping it are joined by the penalty algorithm, folded chunk
/// by chunk (not replica by replica) from the chunk taken first, counter hints left as the
/// chunks say. The joined samples are encoded again, and chunks encoded this way go back among
/// those still to be taken. The algorithm starts afresh at each group of overlapping chunks,
/// so where replicas do not overlap, each one's samples are kept whole. Floats and histograms
/// of a group are one time line, as Thanos's querier walks them (Thanos's compactor keeps only
/// the first chunk's kind: README, Known differences from Thanos).
pub fn penalty_dedup_series_chunks(
    inputs: Vec<Vec<SeriesChunk>>,
) -> Result<Vec<SeriesChunk>, ChunkError> {
    merge_chunks(inputs, Join::Penalty)
}

fn merge_chunks(inputs: Vec<Vec<SeriesChunk>>, join: Join) -> Result<Vec<SeriesChunk>, ChunkError> {
    let mut queues: Vec<std::collections::VecDeque<SeriesChunk>> = inputs
        .into_iter()
        .map(std::collections::VecDeque::from)
        .collect();
    let chunk_less = |queues: &[std::collections::VecDeque<SeriesChunk>], a: usize, b: usize| {
        let (x, y) = (&queues[a][0], &queues[b][0]);
        if x.min_time == y.min_time {
            x.max_time < y.max_time
        } else {
            x.min_time < y.min_time
        }
    };
    let mut heap = GoHeap::default();
    for i in 0..queues.len() {
        if !queues[i].is_empty() {
            heap.push(i, |a, b| chunk_less(&queues, a, b));
        }
    }
    let mut out = Vec::new();
    while let Some(i) = heap.pop(|a, b| chunk_less(&queues, a, b)) {
        #[allow(
            clippy::expect_used,
            reason = "only queues with chunks left are pushed onto the heap"
        )]
        let curr = queues[i]
            .pop_front()
            .expect("queues in the heap are not empty");
        if !queues[i].is_empty() {
            heap.push(i, |a, b| chunk_less(&queues, a, b));
        }
        let mut overlapping: Vec<SeriesChunk> = Vec::new();
        let mut o_max = curr.max_time;
        while let Some(&j) = heap.peek() {
            let next = &queues[j][0];
            if next.min_time > o_max {
                break;
            }
            let prev = overlapping.last().unwrap_or(&curr);
            let duplicate = next.min_time == prev.min_time
                && next.max_time == prev.max_time
                && next.data == prev.data;
            #[allow(
                clippy::expect_used,
                reason = "the heap was peeked non-empty just above"
            )]
            let j = heap.pop(|a, b| chunk_less(&queues, a, b)).expect("peeked");
            #[allow(
                clippy::expect_used,
                reason = "only queues with chunks left are pushed onto the heap"
            )]
            let next = queues[j]
                .pop_front()
                .expect("queues in the heap are not empty");
            if !queues[j].is_empty() {
                heap.push(j, |a, b| chunk_less(&queues, a, b));
            }
            if !duplicate {
                o_max = o_max.max(next.max_time);
                overlapping.push(next);
            }
        }
        if overlapping.is_empty() {
            out.push(curr);
            continue;
        }
        let mut encoded = match join {
            // Prometheus chains the overlapping chunks with the first one taken last.
            Join::Chain => {
                overlapping.push(curr);
                encode_chained(&overlapping)?
            }
            Join::Penalty => encode_penalty(&curr, &overlapping)?,
        }
        .into_iter();
        let Some(first) = encoded.next() else {
            continue;
        };
        out.push(first);
        let rest: std::collections::VecDeque<SeriesChunk> = encoded.collect();
        if !rest.is_empty() {
            queues.push(rest);
            let k = queues.len() - 1;
            heap.push(k, |a, b| chunk_less(&queues, a, b));
        }
    }
    Ok(out)
}

/// The samples of `chunks` chained (one per timestamp) and encoded again.
fn encode_chained(chunks: &[SeriesChunk]) -> Result<Vec<SeriesChunk>, ChunkError> {
    let decoded = chunks
        .iter()
        .map(|c| decode_chunk(c.encoding, &c.data))
        .collect::<Result<Vec<_>, _>>()?;
    let mut enc = Encoder::default();
    for (t, v) in chain(&decoded) {
        enc.append(t, v)?;
    }
    Ok(enc.finish())
}

/// The samples of `base` and of `others`, folded chunk by chunk with the penalty algorithm
/// (`merge(merge(base, o1), o2)…`) and encoded again.
fn encode_penalty(
    base: &SeriesChunk,
    others: &[SeriesChunk],
) -> Result<Vec<SeriesChunk>, ChunkError> {
    let mut replicas = Vec::with_capacity(others.len() + 1);
    for c in std::iter::once(base).chain(others) {
        replicas.push(decode_chunk(c.encoding, &c.data)?);
    }
    let mut enc = Encoder::default();
    for (t, v) in crate::query::penalty_merge_lists(&replicas, |_| {}) {
        enc.append(t, v)?;
    }
    Ok(enc.finish())
}

/// Chains sample lists (each in time order) into one, one sample per timestamp, choosing
/// among lists as Prometheus's chain iterator does; a sample taken from another list than the
/// sample before loses its counter hint.
fn chain(lists: &[Vec<(i64, Value)>]) -> Vec<(i64, Value)> {
    // Position of the next sample in each list; the current list is read at `pos - 1`.
    let mut pos = vec![0usize; lists.len()];
    let at = |pos: &[usize], k: usize| lists[k].get(pos[k].wrapping_sub(1)).map(|s| s.0);
    let less = |pos: &[usize], a: usize, b: usize| at(pos, a) < at(pos, b);
    let mut out: Vec<(i64, Value)> = Vec::new();
    if lists.is_empty() {
        return out;
    }
    let mut heap = GoHeap::default();
    // The first list is current; every other one is advanced to its first sample and queued.
    let mut curr = Some(0usize);
    for k in 1..lists.len() {
        if !lists[k].is_empty() {
            pos[k] = 1;
            heap.push(k, |a, b| less(&pos, a, b));
        }
    }
    let mut last_t: Option<i64> = None;
    while let Some(mut c) = curr {
        let mut changed = out.is_empty();
        let t;
        loop {
            if pos[c] < lists[c].len() {
                pos[c] += 1;
                let ct = lists[c][pos[c] - 1].0;
                if Some(ct) == last_t {
                    continue;
                }
                match heap.peek() {
                    None => {
                        t = Some(ct);
                        break;
                    }
                    Some(&top) if Some(ct) < at(&pos, top) => {
                        t = Some(ct);
                        break;
                    }
                    Some(_) => heap.push(c, |a, b| less(&pos, a, b)),
                }
            } else if heap.is_empty() {
                t = None;
                break;
            }
            #[allow(
                clippy::expect_used,
                reason = "the heap was checked non-empty just above"
            )]
            let next = heap.pop(|a, b| less(&pos, a, b)).expect("not empty");
            c = next;
            changed = true;
            // Seeking to its own timestamp leaves a list where it is.
            let ct = at(&pos, c);
            if ct != last_t {
                t = ct;
                break;
            }
        }
        let Some(t) = t else {
            curr = None;
            continue;
        };
        curr = Some(c);
        last_t = Some(t);
        let mut v = lists[c][pos[c] - 1].1.clone();
        if changed {
            forget_counter_hint(&mut v);
        }
        out.push((t, v));
    }
    out
}

/// What a sample's chunk said about counter resets no longer holds once it follows a sample
/// of another chunk: `NotCounterReset` becomes `Unknown` (for float histograms any counter
/// hint does; gauges stay gauges).
fn forget_counter_hint(v: &mut Value) {
    match v {
        Value::Int(h) if h.counter_reset_hint == CounterResetHint::NotCounterReset => {
            h.counter_reset_hint = CounterResetHint::Unknown;
        }
        Value::FloatHist(h) if h.counter_reset_hint != CounterResetHint::Gauge => {
            h.counter_reset_hint = CounterResetHint::Unknown;
        }
        _ => {}
    }
}

/// The open chunk of an [`Encoder`].
enum Open {
    Xor(XorAppender),
    Int(HistogramAppender),
    Float(FloatHistogramAppender),
}

impl Open {
    fn new(encoding: Encoding) -> Open {
        match encoding {
            Encoding::Histogram => Open::Int(HistogramAppender::new()),
            Encoding::FloatHistogram => Open::Float(FloatHistogramAppender::new()),
            _ => Open::Xor(XorAppender::new()),
        }
    }

    fn encoding(&self) -> Encoding {
        match self {
            Open::Xor(_) => Encoding::Xor,
            Open::Int(_) => Encoding::Histogram,
            Open::Float(_) => Encoding::FloatHistogram,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Open::Xor(a) => a.bytes(),
            Open::Int(a) => a.bytes(),
            Open::Float(a) => a.bytes(),
        }
    }
}

/// Samples encoded into chunks as Prometheus's series-to-chunk encoder does.
#[derive(Default)]
struct Encoder {
    open: Option<Open>,
    /// Samples in the open chunk since it was cut by type or count.
    n: usize,
    min_time: i64,
    max_time: i64,
    done: Vec<SeriesChunk>,
}

impl Encoder {
    fn append(&mut self, t: i64, v: Value) -> Result<(), ChunkError> {
        let enc = v.encoding();
        if self.open.as_ref().is_none_or(|o| o.encoding() != enc)
            || self.n >= SAMPLES_PER_ENCODED_CHUNK
        {
            self.cut(Open::new(enc), t);
        }
        self.append_unsplit(t, v)
    }

    /// Appends without the type and count cuts (the appender's own cuts still apply).
    fn append_unsplit(&mut self, t: i64, v: Value) -> Result<(), ChunkError> {
        if self.open.is_none() {
            self.cut(Open::new(v.encoding()), t);
        }
        #[allow(
            clippy::expect_used,
            reason = "`cut` just above opened a chunk when none was"
        )]
        let open = self.open.as_mut().expect("opened above");
        let new = match (open, v) {
            (Open::Xor(a), Value::Float(f)) => {
                a.try_append(t, f)?;
                None
            }
            (Open::Int(a), Value::Int(h)) => match a.append(None, t, &h)? {
                HistogramAppend::NewChunk(next) => Some(Open::Int(next)),
                _ => None,
            },
            (Open::Float(a), Value::FloatHist(h)) => match a.append(None, t, &h)? {
                HistogramAppend::NewChunk(next) => Some(Open::Float(next)),
                _ => None,
            },
            _ => unreachable!("the open chunk has the sample's type"),
        };
        if let Some(next) = new {
            self.cut(next, t);
        }
        self.max_time = t;
        self.n += 1;
        Ok(())
    }

    /// Closes the open chunk (if it holds samples) and makes `next` the open one, starting at
    /// `t`.
    fn cut(&mut self, next: Open, t: i64) {
        if let Some(old) = self.open.replace(next)
            && !old.bytes().is_empty()
            && old.bytes()[..2] != [0, 0]
        {
            self.done.push(SeriesChunk {
                encoding: old.encoding() as u8,
                min_time: self.min_time,
                max_time: self.max_time,
                data: old.bytes().to_vec(),
            });
        }
        self.min_time = t;
        self.n = 0;
    }

    fn finish(mut self) -> Vec<SeriesChunk> {
        if let Some(open) = self.open.take()
            && open.bytes().get(..2).is_some_and(|c| c != [0, 0])
        {
            self.done.push(SeriesChunk {
                encoding: open.encoding() as u8,
                min_time: self.min_time,
                max_time: self.max_time,
                data: open.bytes().to_vec(),
            });
        }
        self.done
    }
}

/// A binary min-heap of indices that behaves as Go's `container/heap` with a strict `less`:
/// the same pushes and pops give the same order among equal elements.
#[derive(Default)]
struct GoHeap {
    items: Vec<usize>,
}

impl GoHeap {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn peek(&self) -> Option<&usize> {
        self.items.first()
    }

    fn push(&mut self, x: usize, less: impl Fn(usize, usize) -> bool) {
        self.items.push(x);
        self.up(self.items.len() - 1, &less);
    }

    fn pop(&mut self, less: impl Fn(usize, usize) -> bool) -> Option<usize> {
        let n = self.items.len().checked_sub(1)?;
        self.items.swap(0, n);
        self.down(0, n, &less);
        self.items.pop()
    }

    fn up(&mut self, mut j: usize, less: &impl Fn(usize, usize) -> bool) {
        while j > 0 {
            let i = (j - 1) / 2;
            if i == j || !less(self.items[j], self.items[i]) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, i0: usize, n: usize, less: &impl Fn(usize, usize) -> bool) {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && less(self.items[j2], self.items[j1]) {
                j = j2;
            }
            if !less(self.items[j], self.items[i]) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }
}
