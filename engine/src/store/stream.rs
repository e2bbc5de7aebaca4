//! The streamed Series answer. Each selected block's postings are resolved on the core that
//! owns it; the selected series refs are split into parts (a large block is shared by every
//! core); each part is read on its core in bounded batches (series entries, then chunks, both
//! by coalesced reads) and sent over a bounded channel; the caller merges the parts' sorted
//! streams into one sorted stream of batches, merging series that several blocks hold.
//!
//! Memory is bounded by the number of parts times a few batches, and batches are sized from
//! the store's stream budget, so a query that selects everything costs no more than one that
//! selects little, only longer.

use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::batch::SeriesBatch;
use super::block::{BucketBlock, RawChunk};
use super::core::StoreCore;
use super::select::served_chunk;
use super::series::{
    MAX_SAMPLES_PER_CHUNK, SeriesQuery, block_matchers, merge_chunks, recut_chunks,
};
use super::{BucketStore, Limits, StoreError};
use crate::chunk::xor::xor_num_samples;
use crate::index::{ChunkMeta, plan_postings};
use crate::shard::Core;

/// Most series in one batch.
const BATCH_SERIES: usize = 1024;
/// Smallest byte target of a batch.
const MIN_BATCH_BYTES: usize = 64 << 10;
/// Batches waiting in each part's channel (one more is being filled, one is being merged).
const CHANNEL_BATCHES: usize = 1;
/// A block's selection is split over the cores when it holds more series than this.
const SPLIT_SERIES: usize = 16 * 1024;
/// Series entries are cached only for selections of at most this many series per block: a
/// scan of a whole block would only evict what smaller queries reuse.
const CACHE_SERIES_MAX: usize = 64 * 1024;

/// What one request has used so far, checked against [`Limits`].
#[derive(Debug, Default)]
struct Usage {
    series: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl Usage {
    fn add(counter: &AtomicU64, n: u64, max: u64, limit: &'static str) -> Result<(), StoreError> {
        let value = counter.fetch_add(n, Relaxed) + n;
        if max > 0 && value > max {
            return Err(StoreError::LimitExceeded { limit, value, max });
        }
        Ok(())
    }
}

/// The request as every part sees it.
#[derive(Debug)]
struct Prepared {
    q: SeriesQuery,
    limits: Limits,
    usage: Usage,
    batch_bytes: usize,
}

type PartResult = Result<SeriesBatch, StoreError>;

/// One part's stream and the batch being merged from it.
struct Source {
    rx: flume::Receiver<PartResult>,
    batch: SeriesBatch,
    pos: usize,
    block: String,
}

/// A sorted stream of series batches answering a Series request.
#[derive(Debug)]
pub struct SeriesStream {
    /// Problems with single blocks (partial response), so far.
    pub warnings: Vec<String>,
    /// ULIDs of the blocks queried.
    pub queried_blocks: Vec<String>,
    sources: Vec<Source>,
    /// Indexes into `sources` of those with a current series, sorted by it.
    heads: Vec<usize>,
    started: bool,
    abort_on_error: bool,
    limit: u64,
    returned: u64,
    /// Byte target of an output batch.
    batch_target: usize,
    metrics: Arc<super::StoreMetrics>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("block", &self.block)
            .finish()
    }
}

impl BucketStore {
    /// Starts answering a Series request as a stream of sorted batches; the blocks' parts are
    /// read on the engine cores while the caller consumes the stream.
    pub async fn series_stream(&self, q: &SeriesQuery) -> Result<SeriesStream, StoreError> {
        self.check_series_query(q)?;
        self.metrics.series_requests.fetch_add(1, Relaxed);
        let blocks = self.select_blocks(q);
        let cores = self.cores.cores();
        // Every part holds a few batches: the budget is shared by all parts of the request.
        let parts_guess = (blocks.len() * cores).max(1);
        let batch_bytes =
            (self.opts.stream_buffer_bytes as usize / (3 * parts_guess)).max(MIN_BATCH_BYTES);
        let prep = Arc::new(Prepared {
            q: q.clone(),
            limits: self.opts.limits,
            usage: Usage::default(),
            batch_bytes,
        });
        let resolved = futures::future::join_all(blocks.iter().map(|b| {
            let (b, p) = (b.clone(), prep.clone());
            self.cores.call(b.owner(), move |core| async move {
                resolve(&core, &b, &p).await
            })
        }))
        .await;
        let mut stream = SeriesStream {
            warnings: Vec::new(),
            queried_blocks: Vec::with_capacity(blocks.len()),
            sources: Vec::new(),
            heads: Vec::new(),
            started: false,
            abort_on_error: q.abort_on_error,
            limit: q.limit,
            returned: 0,
            batch_target: batch_bytes,
            metrics: self.metrics.clone(),
        };
        for (b, r) in blocks.iter().zip(resolved) {
            stream.queried_blocks.push(b.id().to_string());
            let refs = match r {
                Ok(Ok(refs)) => refs,
                Ok(Err(e)) => {
                    stream.block_failed(b.id(), e)?;
                    continue;
                }
                Err(canceled) => {
                    stream
                        .block_failed(b.id(), StoreError::InvalidRequest(canceled.to_string()))?;
                    continue;
                }
            };
            if refs.is_empty() {
                continue;
            }
            let cache = refs.len() <= CACHE_SERIES_MAX;
            let parts = if refs.len() > SPLIT_SERIES { cores } else { 1 };
            let per = refs.len().div_ceil(parts);
            for (i, part) in refs.chunks(per).enumerate() {
                let (tx, rx) = flume::bounded(CHANNEL_BATCHES);
                let (b2, p2, part) = (b.clone(), prep.clone(), part.to_vec());
                self.cores.spawn(b.owner() + i, move |core| async move {
                    produce(core, b2, p2, part, cache, tx).await;
                });
                stream.sources.push(Source {
                    rx,
                    batch: SeriesBatch::new(),
                    pos: 0,
                    block: b.id().to_string(),
                });
            }
        }
        Ok(stream)
    }

    /// Rejects malformed requests and requests before the first sync.
    pub(super) fn check_series_query(&self, q: &SeriesQuery) -> Result<(), StoreError> {
        if !self.is_ready() {
            return Err(StoreError::NotReady);
        }
        if q.min_time > q.max_time {
            return Err(StoreError::InvalidRequest(format!(
                "min_time {} is after max_time {}",
                q.min_time, q.max_time
            )));
        }
        if q.matchers.is_empty() {
            return Err(StoreError::InvalidRequest("no matchers given".into()));
        }
        Ok(())
    }
}

impl SeriesStream {
    fn block_failed(&mut self, block: &str, e: StoreError) -> Result<(), StoreError> {
        match e {
            e @ StoreError::LimitExceeded { .. } => {
                self.metrics.limit_refusals.fetch_add(1, Relaxed);
                Err(e)
            }
            e if self.abort_on_error => Err(e),
            e => {
                tracing::warn!(block, error = %e, "series: block failed");
                self.warnings.push(format!("block {block}: {e}"));
                Ok(())
            }
        }
    }

    /// Makes sure source `s` has a current series (receiving its next batch if needed);
    /// returns whether it has one.
    async fn fill(&mut self, s: usize) -> Result<bool, StoreError> {
        loop {
            let src = &mut self.sources[s];
            if src.pos < src.batch.len() {
                return Ok(true);
            }
            match src.rx.recv_async().await {
                Ok(Ok(b)) => {
                    src.batch = b;
                    src.pos = 0;
                }
                Ok(Err(e)) => {
                    let block = src.block.clone();
                    src.batch = SeriesBatch::new();
                    src.pos = 0;
                    self.block_failed(&block, e)?;
                    return Ok(false);
                }
                Err(_) => {
                    src.batch = SeriesBatch::new();
                    src.pos = 0;
                    return Ok(false);
                }
            }
        }
    }

    fn cmp_heads(&self, a: usize, b: usize) -> Ordering {
        let (x, y) = (&self.sources[a], &self.sources[b]);
        x.batch.cmp_series(x.pos, &y.batch, y.pos)
    }

    /// Puts source `s` (which has a current series) into the sorted heads; among equal
    /// series, earlier sources (older blocks) come first.
    fn insert_head(&mut self, s: usize) {
        let at = self
            .heads
            .partition_point(|&h| self.cmp_heads(h, s).then(h.cmp(&s)) == Ordering::Less);
        self.heads.insert(at, s);
    }

    /// The next batch of merged series, sorted; `None` at the end.
    pub async fn next_batch(&mut self) -> Result<Option<SeriesBatch>, StoreError> {
        if !self.started {
            self.started = true;
            for s in 0..self.sources.len() {
                if self.fill(s).await? {
                    self.insert_head(s);
                }
            }
        }
        let mut out = SeriesBatch::new();
        let mut merged: Vec<usize> = Vec::new();
        while let Some(&s) = self.heads.first() {
            if self.limit > 0 && self.returned >= self.limit {
                self.heads.clear();
                break;
            }
            let src = &self.sources[s];
            let same =
                !out.is_empty() && out.cmp_series(out.len() - 1, &src.batch, src.pos).is_eq();
            if !same && (out.len() >= BATCH_SERIES || out.bytes() >= self.batch_target) {
                break;
            }
            if same {
                out.append_chunks_of(&src.batch, src.pos);
                if merged.last() != Some(&(out.len() - 1)) {
                    merged.push(out.len() - 1);
                }
            } else {
                out.copy_series(&src.batch, src.pos);
                self.returned += 1;
            }
            self.heads.remove(0);
            self.sources[s].pos += 1;
            if self.fill(s).await? {
                self.insert_head(s);
            }
        }
        for i in merged {
            let chunks =
                merge_chunks(out.chunks(i).to_vec()).map_err(|source| StoreError::Chunk {
                    block: "merge".into(),
                    series: format!("{:?}", out.series(i).labels),
                    source,
                })?;
            out.replace_chunks(i, chunks);
        }
        if out.is_empty() {
            return Ok(None);
        }
        let m = &self.metrics;
        m.series_returned.fetch_add(out.len() as u64, Relaxed);
        let chunks: usize = (0..out.len()).map(|i| out.chunks(i).len()).sum();
        m.chunks_returned.fetch_add(chunks as u64, Relaxed);
        Ok(Some(out))
    }
}

/// Resolves the request's matchers to the block's series refs, on the block's owner core.
async fn resolve(
    core: &Core<StoreCore>,
    b: &BucketBlock,
    p: &Prepared,
) -> Result<Vec<u32>, StoreError> {
    let Some(matchers) = block_matchers(b, &p.q.matchers) else {
        return Ok(Vec::new());
    };
    let plan = plan_postings(b.header.reader(), &matchers)?;
    b.postings(core, &plan).await
}

/// Reads one part of a block's selection on this core and sends it in batches; stops early
/// when the reader goes away.
async fn produce(
    core: Rc<Core<StoreCore>>,
    b: Arc<BucketBlock>,
    p: Arc<Prepared>,
    refs: Vec<u32>,
    cache: bool,
    tx: flume::Sender<PartResult>,
) {
    let mut order =
        OrderKeeper::new(!b.ext_labels.is_empty() || !p.q.without_replica_labels.is_empty());
    let mut start = 0;
    // Series per batch, adapted to what the last batch weighed so a batch stays near the byte
    // target whatever the series' chunk counts.
    let mut per_batch = 64;
    while start < refs.len() {
        let step = per_batch.min(refs.len() - start);
        let res = read_batch(&core, &b, &p, &refs[start..start + step], cache).await;
        start += step;
        let out = match res {
            Ok(batch) => {
                let per_series = batch.bytes() / step.max(1) + 1;
                per_batch = (p.batch_bytes / per_series).clamp(16, BATCH_SERIES);
                order.push(batch, start >= refs.len())
            }
            Err(e) => {
                let _ = tx.send_async(Err(e)).await;
                return;
            }
        };
        for batch in out {
            if batch.is_empty() {
                continue;
            }
            if tx.send_async(Ok(batch)).await.is_err() {
                return;
            }
        }
    }
}

/// Reads the series entries of `refs` and their chunks into a batch of served series.
async fn read_batch(
    core: &Core<StoreCore>,
    b: &BucketBlock,
    p: &Prepared,
    refs: &[u32],
    cache: bool,
) -> Result<SeriesBatch, StoreError> {
    let q = &p.q;
    let entries = b.series_entries(core, refs, cache).await?;
    let reader = b.header.reader();
    let mut batch = SeriesBatch::new();
    let mut label_refs = Vec::new();
    let mut metas = Vec::new();
    let mut wanted: Vec<ChunkMeta> = Vec::new();
    let mut owners: Vec<u32> = Vec::new();
    let mut shard_buf = Vec::new();
    for (&r, e) in refs.iter().zip(&entries) {
        reader.decode_series_entry_refs(e, u64::from(r) * 16, &mut label_refs, &mut metas)?;
        let first = wanted.len();
        wanted.extend(
            metas
                .iter()
                .filter(|c| c.max_time >= q.min_time && c.min_time <= q.max_time),
        );
        if wanted.len() == first {
            continue;
        }
        batch.start_series();
        push_served_labels(
            &mut batch,
            b,
            reader,
            &label_refs,
            &q.without_replica_labels,
        )?;
        if let Some(s) = &q.shard
            && !s.matches_batch(&batch, batch.len() - 1, &mut shard_buf)
        {
            batch.pop_series();
            wanted.truncate(first);
            continue;
        }
        Usage::add(&p.usage.series, 1, p.limits.series, "series")?;
        let n = (wanted.len() - first) as u64;
        Usage::add(
            &p.usage.samples,
            n * MAX_SAMPLES_PER_CHUNK as u64,
            p.limits.samples,
            "samples",
        )?;
        owners.extend(std::iter::repeat_n(
            batch.len() as u32 - 1,
            wanted.len() - first,
        ));
    }
    if q.skip_chunks || wanted.is_empty() {
        return Ok(batch);
    }
    let chunks = b.chunks(core, &wanted).await?;
    let bytes: u64 = chunks.iter().map(|c| c.data.len() as u64).sum();
    Usage::add(&p.usage.bytes, bytes, p.limits.bytes, "bytes")?;
    // Chunks come back in the order asked, i.e. grouped by series in batch order.
    let mut out = SeriesBatch::new();
    let mut it = chunks.into_iter().zip(owners).peekable();
    for i in 0..batch.len() {
        out.start_series();
        for (n, v) in batch.labels(i) {
            out.push_label(n, v);
        }
        let mut own: Vec<RawChunk> = Vec::new();
        while let Some((_, o)) = it.peek()
            && *o as usize == i
        {
            let (c, _) = it.next().unwrap_or_else(|| unreachable!("peeked"));
            own.push(served_chunk(c, &q.aggregates).map_err(|source| aggr_err(b, &out, source))?);
        }
        let sorted = own.windows(2).all(|w| w[0].max_time < w[1].min_time);
        let long = own.iter().any(|c| {
            c.encoding == 1 && xor_num_samples(&c.data).is_ok_and(|n| n > MAX_SAMPLES_PER_CHUNK)
        });
        if sorted && !long {
            for c in own {
                out.push_chunk(c);
            }
        } else if sorted {
            for c in own {
                for c in recut_chunks(c).map_err(|source| chunk_err(b, &out, source))? {
                    out.push_chunk(c);
                }
            }
        } else {
            for c in merge_chunks(own).map_err(|source| chunk_err(b, &out, source))? {
                out.push_chunk(c);
            }
        }
    }
    Ok(out)
}

fn chunk_err(b: &BucketBlock, out: &SeriesBatch, source: crate::chunk::ChunkError) -> StoreError {
    StoreError::Chunk {
        block: b.id().to_string(),
        series: format!("{:?}", out.series(out.len() - 1).labels),
        source,
    }
}

fn aggr_err(b: &BucketBlock, out: &SeriesBatch, source: crate::chunk::AggrError) -> StoreError {
    StoreError::Aggregate {
        block: b.id().to_string(),
        series: format!("{:?}", out.series(out.len() - 1).labels),
        source,
    }
}

/// Appends a block series' labels as served: external labels attached (their values win),
/// replica labels removed, sorted by name.
fn push_served_labels(
    batch: &mut SeriesBatch,
    b: &BucketBlock,
    reader: &crate::index::IndexReader<memmap2::Mmap>,
    refs: &[(u32, u32)],
    without: &[String],
) -> Result<(), StoreError> {
    let ext = b.ext_labels.as_slice();
    let mut e = 0;
    let skip = |n: &[u8]| without.iter().any(|w| w.as_bytes() == n);
    for &(nr, vr) in refs {
        let name = reader.symbol_bytes(nr)?;
        while e < ext.len() && ext[e].name.as_bytes() < name {
            if !skip(ext[e].name.as_bytes()) {
                batch.push_label(ext[e].name.as_bytes(), ext[e].value.as_bytes());
            }
            e += 1;
        }
        if e < ext.len() && ext[e].name.as_bytes() == name {
            continue; // the external label's value wins, added in the loop above next time
        }
        if skip(name) {
            continue;
        }
        batch.push_label(name, reader.symbol_bytes(vr)?);
    }
    while e < ext.len() {
        if !skip(ext[e].name.as_bytes()) {
            batch.push_label(ext[e].name.as_bytes(), ext[e].value.as_bytes());
        }
        e += 1;
    }
    Ok(())
}

/// Keeps a part's output sorted when external labels are attached or replica labels removed.
/// Attaching a label to every series keeps index order except between a series and the
/// series that extend its label set, which follow it in the index: a series is held back until
/// a later one shows it cannot be overtaken. Removing a label can reorder anything, so the
/// held series are simply sorted at the end of each batch and, where needed, at the end.
struct OrderKeeper {
    active: bool,
    held: SeriesBatch,
}

impl OrderKeeper {
    fn new(active: bool) -> Self {
        OrderKeeper {
            active,
            held: SeriesBatch::new(),
        }
    }

    /// Takes a batch in index order; returns batches in served order. `last` flushes.
    fn push(&mut self, mut batch: SeriesBatch, last: bool) -> Vec<SeriesBatch> {
        if !self.active {
            return vec![batch];
        }
        let in_order = (1..batch.len()).all(|i| batch.cmp_series(i - 1, &batch, i).is_lt())
            && (self.held.is_empty()
                || batch.is_empty()
                || self.held.cmp_series(0, &batch, 0).is_lt());
        if in_order {
            // The usual case: emit the held series and the batch, hold back its last series.
            let mut out = vec![std::mem::take(&mut self.held)];
            if !last && !batch.is_empty() {
                self.held.copy_series(&batch, batch.len() - 1);
                batch.pop_series();
            }
            out.push(batch);
            return out;
        }
        let mut all = std::mem::take(&mut self.held);
        for i in 0..batch.len() {
            all.copy_series(&batch, i);
        }
        let mut idx: Vec<usize> = (0..all.len()).collect();
        idx.sort_by(|&a, &b| all.cmp_series(a, &all, b));
        let keep = if last { 0 } else { 1.min(idx.len()) };
        let mut out = SeriesBatch::new();
        for &i in &idx[..idx.len() - keep] {
            out.copy_series(&all, i);
        }
        for &i in &idx[idx.len() - keep..] {
            self.held.copy_series(&all, i);
        }
        vec![out]
    }
}
