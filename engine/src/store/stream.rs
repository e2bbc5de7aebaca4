//! The streamed Series answer. Each selected block's matchers are resolved on the core that
//! owns it into bitpacked series refs; the refs are cut into stripes of about one batch each,
//! and stripe `k` is read on core `owner + k` (series entries, symbol pages, chunks, all by
//! coalesced reads) and sent over that core's bounded channel for the block. Since refs ascend
//! in label order, the caller gets a block's series in order by taking stripe after stripe from
//! the cores in turn: the cores read in parallel and nothing is compared or copied per series.
//! Blocks are then merged per series where several hold the same one, and passed through a
//! batch at a time where they do not overlap.
//!
//! Memory is bounded by the number of parts times a few batches, and batches are sized from
//! the store's stream budget, so a query that selects everything costs no more than one that
//! selects little, only longer.

use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures::StreamExt;

use super::batch::{FrameEncoder, SeriesBatch};
use super::block::BucketBlock;
use super::core::StoreCore;
use super::entry::decode_entry;
use super::postings::PackedRefs;
use super::resolve::resolve;
use super::select::served_chunk;
use super::series::{
    MAX_SAMPLES_PER_CHUNK, SeriesQuery, block_matchers, merge_chunks, recut_chunks,
};
use super::symbols::SymbolPages;
use super::{BucketStore, Limits, StoreError};
use crate::chunk::Encoding;
use crate::chunk::xor::xor_num_samples;
use crate::index::ChunkMeta;
use crate::shard::Core;

/// Most series in one batch.
const BATCH_SERIES: usize = 1024;
/// Fewest series in a stripe.
const MIN_STRIPE: usize = 64;
/// Smallest byte target of a batch.
const MIN_BATCH_BYTES: usize = 64 << 10;
/// Batches waiting in each part's channel (one more is being filled, one is being merged).
const CHANNEL_BATCHES: usize = 2;
/// A block's selection is read by every core when it holds more series than this.
const SPLIT_SERIES: usize = 16 * 1024;
/// Series entries and chunk pages are cached only for selections of at most this many series
/// per block: a scan of a whole block would only evict what smaller queries reuse.
const CACHE_SERIES_MAX: usize = 64 * 1024;
/// A producer keeps symbol pages up to this fraction of its core's cache budget.
const SYMBOL_SHARE: usize = 8;
/// Blocks a core resolves at once: each holds its postings lists while it is resolved.
const RESOLVE_CONCURRENCY: usize = 4;

/// What one request has used so far, checked against [`Limits`].
#[derive(Debug, Default)]
struct Usage {
    series: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl Usage {
    fn add(counter: &AtomicU64, n: u64, max: u64, limit: &'static str) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
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
    /// Bytes of symbol pages a producer keeps between its batches.
    symbol_bytes: usize,
    /// Encodes each batch on its core for the caller, when asked.
    encoder: Option<Arc<dyn FrameEncoder>>,
}

/// A batch of a stripe, and whether it is the stripe's last.
type PartResult = Result<(SeriesBatch, bool), StoreError>;

/// One block's stream as the caller reads it: stripe `k` comes over `rxs[k % rxs.len()]`.
struct Source {
    rxs: Vec<flume::Receiver<PartResult>>,
    stripes: usize,
    stripe: usize,
    batch: SeriesBatch,
    pos: usize,
    block: String,
    /// Attached external labels or removed replica labels may move a series past a batch
    /// boundary: the last series of each batch is held back until the next batch shows where
    /// it goes.
    reorder: bool,
    held: SeriesBatch,
    pending: Option<SeriesBatch>,
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
            .field("stripe", &self.stripe)
            .finish()
    }
}

/// What one core reads of a block: every `step`-th stripe from `first`.
struct Part {
    block: Arc<BucketBlock>,
    refs: Arc<PackedRefs>,
    stripe: usize,
    first: usize,
    step: usize,
    cache_entries: bool,
    cache_chunks: bool,
    reorder: bool,
}

impl BucketStore {
    /// Starts answering a Series request as a stream of sorted batches; the blocks' parts are
    /// read on the engine cores while the caller consumes the stream.
    pub async fn series_stream(&self, q: &SeriesQuery) -> Result<SeriesStream, StoreError> {
        self.series_stream_encoded(q, None).await
    }

    /// As [`BucketStore::series_stream`], with each batch also written by `encoder` on the
    /// core that read it: batches that reach the caller unchanged carry their encoded series
    /// ([`SeriesBatch::take_encoded`]); those the caller's merge built do not.
    pub async fn series_stream_encoded(
        &self,
        q: &SeriesQuery,
        encoder: Option<Arc<dyn FrameEncoder>>,
    ) -> Result<SeriesStream, StoreError> {
        self.check_series_query(q)?;
        self.metrics.series_requests.fetch_add(1, Relaxed);
        let blocks = self.select_blocks(q);
        let cores = self.cores.cores();
        let local = self.bucket.local_root().is_some();
        // Every part holds a few batches: the budget is shared by all parts of the request.
        let parts_guess = (blocks.len() * cores).max(1);
        let batch_bytes = (self.opts.stream_buffer_bytes as usize
            / ((CHANNEL_BATCHES + 2) * parts_guess))
            .max(MIN_BATCH_BYTES);
        let prep = Arc::new(Prepared {
            q: q.clone(),
            limits: self.opts.limits,
            usage: Usage::default(),
            batch_bytes,
            symbol_bytes: (self.opts.index_cache_bytes as usize / cores) / SYMBOL_SHARE,
            encoder,
        });
        let resolved = self.resolve_all(&blocks, &prep).await;
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
                Ok(refs) => refs,
                Err(e) => {
                    stream.block_failed(b.id(), e)?;
                    continue;
                }
            };
            if refs.is_empty() {
                continue;
            }
            let n = refs.len();
            // A filesystem bucket's index is in the page cache already: one coalesced read of
            // a selection's entries costs less than a lookup per series in the entry cache
            // (each a miss in a large map, measured at 5-7 % of an instant query's CPU).
            // Object storage charges a request per read, so there entries are cached. Chunk
            // pages are cached from any bucket: taken from the cache they cost no copy.
            let cache_entries = !local && n <= CACHE_SERIES_MAX;
            let cache_chunks = n <= CACHE_SERIES_MAX && self.opts.chunk_cache_bytes > 0;
            let parts = if n > SPLIT_SERIES { cores } else { 1 };
            let stripe = stripe_len(b, batch_bytes);
            let stripes = n.div_ceil(stripe);
            let parts = parts.min(stripes);
            let reorder = !b.ext_labels.is_empty() || !q.without_replica_labels.is_empty();
            let refs = Arc::new(refs);
            let mut rxs = Vec::with_capacity(parts);
            for first in 0..parts {
                let (tx, rx) = flume::bounded(CHANNEL_BATCHES);
                let part = Part {
                    block: b.clone(),
                    refs: refs.clone(),
                    stripe,
                    first,
                    step: parts,
                    cache_entries,
                    cache_chunks,
                    reorder,
                };
                let p = prep.clone();
                self.cores.spawn(b.owner() + first, move |core| async move {
                    produce(core, part, p, tx).await;
                });
                rxs.push(rx);
            }
            stream.sources.push(Source {
                rxs,
                stripes,
                stripe: 0,
                batch: SeriesBatch::new(),
                pos: 0,
                block: b.id().to_string(),
                reorder,
                held: SeriesBatch::new(),
                pending: None,
            });
        }
        Ok(stream)
    }

    /// Resolves every block's selection on its owner core, a few blocks at a time per core.
    async fn resolve_all(
        &self,
        blocks: &[Arc<BucketBlock>],
        prep: &Arc<Prepared>,
    ) -> Vec<Result<PackedRefs, StoreError>> {
        let cores = self.cores.cores();
        let mut by_core: Vec<Vec<usize>> = vec![Vec::new(); cores];
        for (i, b) in blocks.iter().enumerate() {
            by_core[b.owner() % cores].push(i);
        }
        let calls = by_core
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(core, idx)| {
                let bs: Vec<Arc<BucketBlock>> = idx.iter().map(|&i| blocks[i].clone()).collect();
                let p = prep.clone();
                let call = self.cores.call(core, move |c| async move {
                    futures::stream::iter(bs)
                        .map(|b| {
                            let (c, p) = (c.clone(), p.clone());
                            async move {
                                match block_matchers(&b, &p.q.matchers) {
                                    Some(m) => resolve(&c, &b, &m).await,
                                    None => Ok(PackedRefs::default()),
                                }
                            }
                        })
                        .buffered(RESOLVE_CONCURRENCY)
                        .collect::<Vec<_>>()
                        .await
                });
                async move { (idx, call.await) }
            });
        let mut out: Vec<Option<Result<PackedRefs, StoreError>>> =
            (0..blocks.len()).map(|_| None).collect();
        for (idx, res) in futures::future::join_all(calls).await {
            match res {
                Ok(rs) => {
                    for (i, r) in idx.into_iter().zip(rs) {
                        out[i] = Some(r);
                    }
                }
                Err(canceled) => {
                    for i in idx {
                        out[i] = Some(Err(StoreError::InvalidRequest(canceled.to_string())));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Stopped)))
            .collect()
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

/// Series per stripe of block `b`: about one batch of `batch_bytes`, from the block's average
/// bytes per series.
fn stripe_len(b: &BucketBlock, batch_bytes: usize) -> usize {
    let series = b.meta.stats.num_series.max(1);
    let per_series = b.segments.iter().sum::<u64>() / series + 128;
    (batch_bytes as u64 / per_series).clamp(MIN_STRIPE as u64, BATCH_SERIES as u64) as usize
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

    /// The next non-empty batch of source `s` as its cores sent it, stripe after stripe.
    async fn recv(&mut self, s: usize) -> Result<Option<SeriesBatch>, StoreError> {
        loop {
            let src = &mut self.sources[s];
            if src.stripe >= src.stripes {
                src.rxs.clear();
                return Ok(None);
            }
            let rx = &src.rxs[src.stripe % src.rxs.len()];
            match rx.recv_async().await {
                Ok(Ok((batch, end))) => {
                    if end {
                        src.stripe += 1;
                    }
                    if !batch.is_empty() {
                        return Ok(Some(batch));
                    }
                }
                Ok(Err(e)) => {
                    // The block stops here; its producers stop when their channels go.
                    src.stripe = src.stripes;
                    src.rxs.clear();
                    let block = src.block.clone();
                    self.block_failed(&block, e)?;
                    return Ok(None);
                }
                Err(_) => {
                    src.stripe = src.stripes;
                    src.rxs.clear();
                    return Ok(None);
                }
            }
        }
    }

    /// The next batch of source `s` in served order: as received, or, for a source whose
    /// label rewriting may move series across batch boundaries, with the last series of each
    /// batch held back until the next batch shows where it goes.
    async fn next_of(&mut self, s: usize) -> Result<Option<SeriesBatch>, StoreError> {
        if !self.sources[s].reorder {
            return self.recv(s).await;
        }
        loop {
            if let Some(b) = self.sources[s].pending.take() {
                return Ok(Some(b));
            }
            let Some(mut b) = self.recv(s).await? else {
                let held = std::mem::take(&mut self.sources[s].held);
                return Ok((!held.is_empty()).then_some(held));
            };
            let src = &mut self.sources[s];
            if src.held.is_empty() || src.held.cmp_series(0, &b, 0).is_lt() {
                // The usual case: the held series goes first; hold back the batch's last.
                let out = std::mem::take(&mut src.held);
                src.held.copy_series(&b, b.len() - 1);
                b.pop_series();
                match (out.is_empty(), b.is_empty()) {
                    (true, true) => continue,
                    (true, false) => return Ok(Some(b)),
                    (false, empty) => {
                        if !empty {
                            src.pending = Some(b);
                        }
                        return Ok(Some(out));
                    }
                }
            }
            // The held series sorts after the batch's first: sort them together.
            let mut all = std::mem::take(&mut src.held);
            for i in 0..b.len() {
                all.copy_series(&b, i);
            }
            let mut all = all.sorted();
            src.held.copy_series(&all, all.len() - 1);
            all.pop_series();
            if !all.is_empty() {
                return Ok(Some(all));
            }
        }
    }

    /// Makes sure source `s` has a current series (receiving its next batch if needed);
    /// returns whether it has one.
    async fn fill(&mut self, s: usize) -> Result<bool, StoreError> {
        if self.sources[s].pos < self.sources[s].batch.len() {
            return Ok(true);
        }
        let next = self.next_of(s).await?;
        let src = &mut self.sources[s];
        src.pos = 0;
        match next {
            Some(b) => {
                src.batch = b;
                Ok(true)
            }
            None => {
                src.batch = SeriesBatch::new();
                Ok(false)
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

    /// Whether the first head's whole current batch sorts before every other source's current
    /// series, so it can be passed on as it is.
    fn whole_batch_first(&self) -> bool {
        let Some(&s) = self.heads.first() else {
            return false;
        };
        let src = &self.sources[s];
        if src.pos != 0 {
            return false;
        }
        match self.heads.get(1) {
            None => true,
            Some(&t) => {
                let other = &self.sources[t];
                src.batch
                    .cmp_series(src.batch.len() - 1, &other.batch, other.pos)
                    .is_lt()
            }
        }
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
        if self.limit > 0 && self.returned >= self.limit {
            self.heads.clear();
            return Ok(None);
        }
        if self.whole_batch_first() {
            let s = self.heads.remove(0);
            let mut out = std::mem::take(&mut self.sources[s].batch);
            if self.fill(s).await? {
                self.insert_head(s);
            }
            if self.limit > 0 {
                let left = (self.limit - self.returned) as usize;
                out.truncate(left);
            }
            self.returned += out.len() as u64;
            return Ok(Some(self.count(out)));
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
            if !same
                && (out.len() >= BATCH_SERIES
                    || out.bytes() >= self.batch_target
                    || (!out.is_empty() && self.whole_batch_first()))
            {
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
            let chunks = merge_chunks(out.raw_chunks(i)).map_err(|source| StoreError::Chunk {
                block: "merge".into(),
                series: format!("{:?}", out.series(i).labels),
                source,
            })?;
            out.replace_chunks(i, chunks);
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.count(out)))
    }

    fn count(&self, out: SeriesBatch) -> SeriesBatch {
        let m = &self.metrics;
        m.series_returned.fetch_add(out.len() as u64, Relaxed);
        m.chunks_returned
            .fetch_add(out.total_chunks() as u64, Relaxed);
        out
    }
}

/// Reusable buffers of one producer.
#[derive(Default)]
struct Scratch {
    refs: Vec<u32>,
    labels: Vec<(u32, u32)>,
    /// Per entry: end of its labels in `labels`, end of its chunks in `metas`.
    spans: Vec<(u32, u32)>,
    metas: Vec<ChunkMeta>,
    /// Per served series: its entry's chunks in `metas`.
    served: Vec<(u32, u32)>,
    shard: Vec<u8>,
    memo: LabelMemo,
    /// Label bytes the last batch wrote, to size the next.
    text_hint: usize,
}

/// Reads this part's stripes of a block on this core and sends them in batches; stops early
/// when the reader goes away.
async fn produce(
    core: Rc<Core<StoreCore>>,
    part: Part,
    p: Arc<Prepared>,
    tx: flume::Sender<PartResult>,
) {
    let b = &part.block;
    let mut syms = SymbolPages::new(b.header.num_pages(), p.symbol_bytes);
    let mut sc = Scratch::default();
    let n = part.refs.len();
    let stripes = n.div_ceil(part.stripe);
    // Series per batch, adapted to what the last batch weighed so a batch stays near the byte
    // target whatever the series' chunk counts.
    let mut per_batch = part.stripe;
    let mut k = part.first;
    while k < stripes {
        let mut refs = std::mem::take(&mut sc.refs);
        refs.clear();
        part.refs
            .decode_range(k * part.stripe..(k + 1) * part.stripe, &mut refs);
        let mut start = 0;
        loop {
            let step = per_batch.min(refs.len() - start);
            let res = read_batch(
                &core,
                &part,
                &p,
                &refs[start..start + step],
                &mut syms,
                &mut sc,
            )
            .await;
            start += step;
            let end = start >= refs.len();
            let batch = match res {
                Ok(batch) => {
                    let mut batch = if part.reorder && !batch.is_sorted() {
                        batch.sorted()
                    } else {
                        batch
                    };
                    if let Some(enc) = &p.encoder {
                        batch.encode_with(enc.as_ref());
                    }
                    let per_series = batch.bytes() / step.max(1) + 1;
                    per_batch = (p.batch_bytes / per_series).clamp(16, BATCH_SERIES);
                    batch
                }
                Err(e) => {
                    let _ = tx.send_async(Err(e)).await;
                    return;
                }
            };
            if (end || !batch.is_empty()) && tx.send_async(Ok((batch, end))).await.is_err() {
                return;
            }
            if end {
                break;
            }
        }
        sc.refs = refs;
        k += part.step;
    }
}

/// Reads the series entries of `refs` and their chunks into a batch of served series.
async fn read_batch(
    core: &Core<StoreCore>,
    part: &Part,
    p: &Prepared,
    refs: &[u32],
    syms: &mut SymbolPages,
    sc: &mut Scratch,
) -> Result<SeriesBatch, StoreError> {
    let q = &p.q;
    let b = &part.block;
    let entries = b.series_entries(core, refs, part.cache_entries).await?;
    let path = b.index_path();
    let num_symbols = b.header.num_symbols();
    sc.labels.clear();
    sc.spans.clear();
    sc.metas.clear();
    let window = if q.whole_blocks && q.skip_chunks {
        (i64::MIN, i64::MAX)
    } else {
        (q.min_time, q.max_time)
    };
    for (i, &r) in refs.iter().enumerate() {
        decode_entry(
            entries.get(i),
            u64::from(r) * 16,
            num_symbols,
            window,
            &path,
            &mut sc.labels,
            &mut sc.metas,
        )?;
        sc.spans
            .push((sc.labels.len() as u32, sc.metas.len() as u32));
    }
    drop(entries);
    syms.load(core, b, sc.labels.iter().flat_map(|&(n, v)| [n, v]))
        .await?;

    let mut batch = SeriesBatch::new();
    batch.reserve(
        refs.len(),
        sc.labels.len() + refs.len() * b.ext_labels.len(),
        sc.text_hint,
        sc.metas.len(),
    );
    sc.memo.start_batch(b.ext_labels.len());
    sc.served.clear();
    let (mut l0, mut c0) = (0u32, 0u32);
    let mut samples = 0u64;
    for &(l1, c1) in &sc.spans {
        let (labels, chunks) = (l0 as usize..l1 as usize, c0..c1);
        (l0, c0) = (l1, c1);
        if chunks.is_empty() {
            continue;
        }
        batch.start_series();
        push_served_labels(
            &mut batch,
            b,
            syms,
            &sc.labels[labels],
            &q.without_replica_labels,
            &mut sc.memo,
        );
        if let Some(s) = &q.shard
            && !s.matches_batch(&batch, batch.len() - 1, &mut sc.shard)
        {
            batch.pop_series();
            continue;
        }
        samples += u64::from(chunks.end - chunks.start) * MAX_SAMPLES_PER_CHUNK as u64;
        sc.served.push((chunks.start, chunks.end));
    }
    sc.text_hint = batch.text_len() + batch.text_len() / 8;
    Usage::add(
        &p.usage.series,
        batch.len() as u64,
        p.limits.series,
        "series",
    )?;
    Usage::add(&p.usage.samples, samples, p.limits.samples, "samples")?;
    if q.skip_chunks || batch.is_empty() {
        return Ok(batch);
    }
    // The chunks of the served series, in series order (and so in file order).
    let mut wanted: Vec<ChunkMeta> = Vec::new();
    let all_served = sc.served.len() == sc.spans.len();
    if all_served {
        std::mem::swap(&mut wanted, &mut sc.metas);
    } else {
        for &(a, z) in &sc.served {
            wanted.extend_from_slice(&sc.metas[a as usize..z as usize]);
        }
    }
    let data = b.chunks(core, &wanted, part.cache_chunks).await?;
    let bytes: u64 = data.at.iter().map(|c| u64::from(c.2)).sum();
    Usage::add(&p.usage.bytes, bytes, p.limits.bytes, "bytes")?;
    let base = batch.bufs_len() as u32;
    for buf in data.bufs {
        batch.add_buf(buf);
    }
    let mut at = 0usize;
    for i in 0..batch.len() {
        let (a, z) = sc.served[i];
        let n = (z - a) as usize;
        let metas = &wanted[at..at + n];
        let got = &data.at[at..at + n];
        at += n;
        batch.open_chunks(i);
        let sorted = metas.windows(2).all(|w| w[0].max_time < w[1].min_time);
        let long = got.iter().any(|&(buf, s, len, enc)| {
            enc == 1
                && xor_num_samples(batch.buf_slice(base + buf, s, len))
                    .is_ok_and(|n| n > MAX_SAMPLES_PER_CHUNK)
        });
        let aggr = got.iter().any(|g| g.3 == Encoding::Aggr as u8);
        if sorted && !long && !aggr {
            for (m, &(buf, s, len, enc)) in metas.iter().zip(got) {
                batch.push_chunk_in(base + buf, s, len, m.min_time, m.max_time, enc);
            }
            continue;
        }
        // Rare: chunks longer than 120 samples, or overlapping ones, are re-cut; downsampled
        // chunks keep only the aggregates asked for.
        let mut own: Vec<super::RawChunk> = Vec::with_capacity(n);
        for (m, &(buf, s, len, enc)) in metas.iter().zip(got) {
            let c = super::RawChunk {
                min_time: m.min_time,
                max_time: m.max_time,
                encoding: enc,
                data: batch.buf_bytes_of(base + buf, s, len),
            };
            own.push(
                served_chunk(c, &q.aggregates).map_err(|source| aggr_err(b, &batch, i, source))?,
            );
        }
        let fixed = if sorted {
            let mut v = Vec::new();
            for c in own {
                v.extend(recut_chunks(c).map_err(|source| chunk_err(b, &batch, i, source))?);
            }
            v
        } else {
            merge_chunks(own).map_err(|source| chunk_err(b, &batch, i, source))?
        };
        for c in fixed {
            batch.push_chunk(c);
        }
    }
    if all_served {
        std::mem::swap(&mut wanted, &mut sc.metas);
    }
    Ok(batch)
}

fn chunk_err(
    b: &BucketBlock,
    batch: &SeriesBatch,
    i: usize,
    source: crate::chunk::ChunkError,
) -> StoreError {
    StoreError::Chunk {
        block: b.id().to_string(),
        series: format!("{:?}", batch.series(i).labels),
        source,
    }
}

fn aggr_err(
    b: &BucketBlock,
    batch: &SeriesBatch,
    i: usize,
    source: crate::chunk::AggrError,
) -> StoreError {
    StoreError::Aggregate {
        block: b.id().to_string(),
        series: format!("{:?}", batch.series(i).labels),
        source,
    }
}

/// Label pairs already written to the batch's arena, by symbol references: sorted series
/// repeat most of their labels, so most labels cost a lookup here instead of two symbol
/// lookups and a copy. Direct-mapped; a generation number empties it per batch.
struct LabelMemo {
    slots: Vec<(u64, u32, [u32; 3])>,
    generation: u32,
    /// External labels written to the current batch.
    ext: Vec<Option<[u32; 3]>>,
}

const MEMO_SLOTS: usize = 4096;

impl Default for LabelMemo {
    fn default() -> Self {
        LabelMemo {
            slots: vec![(0, 0, [0; 3]); MEMO_SLOTS],
            generation: 0,
            ext: Vec::new(),
        }
    }
}

impl LabelMemo {
    fn start_batch(&mut self, ext: usize) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.fill((0, 0, [0; 3]));
            self.generation = 1;
        }
        self.ext.clear();
        self.ext.resize(ext, None);
    }

    #[inline(always)]
    fn slot(key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 12)) as usize
    }

    /// The label `(name, value)` refer to, written to the batch once per batch.
    #[inline(always)]
    fn label(
        &mut self,
        batch: &mut SeriesBatch,
        syms: &SymbolPages,
        name: u32,
        value: u32,
    ) -> [u32; 3] {
        let key = (u64::from(name) << 32) | u64::from(value);
        let i = Self::slot(key);
        let s = &self.slots[i];
        if s.0 == key && s.1 == self.generation {
            return s.2;
        }
        let n = batch.push_text(syms.get(name));
        let v = batch.push_text(syms.get(value));
        let at = [n.start, n.end, v.end];
        self.slots[i] = (key, self.generation, at);
        at
    }
}

/// Appends a block series' labels as served: external labels attached (their values win),
/// replica labels removed, sorted by name.
fn push_served_labels(
    batch: &mut SeriesBatch,
    b: &BucketBlock,
    syms: &SymbolPages,
    refs: &[(u32, u32)],
    without: &[String],
    memo: &mut LabelMemo,
) {
    let ext = b.ext_labels.as_slice();
    if ext.is_empty() && without.is_empty() {
        for &(n, v) in refs {
            let at = memo.label(batch, syms, n, v);
            batch.push_label_at(at);
        }
        return;
    }
    let mut e = 0;
    let skip = |n: &[u8]| without.iter().any(|w| w.as_bytes() == n);
    let push_ext = |batch: &mut SeriesBatch, memo: &mut LabelMemo, e: usize| {
        if skip(ext[e].name.as_bytes()) {
            return;
        }
        let at = match memo.ext[e] {
            Some(at) => at,
            None => {
                let n = batch.push_text(ext[e].name.as_bytes());
                let v = batch.push_text(ext[e].value.as_bytes());
                let at = [n.start, n.end, v.end];
                memo.ext[e] = Some(at);
                at
            }
        };
        batch.push_label_at(at);
    };
    for &(nr, vr) in refs {
        let name = syms.get(nr);
        while e < ext.len() && ext[e].name.as_bytes() < name {
            push_ext(batch, memo, e);
            e += 1;
        }
        if e < ext.len() && ext[e].name.as_bytes() == name {
            continue; // the external label's value wins, added in the loop above next time
        }
        if skip(name) {
            continue;
        }
        let at = memo.label(batch, syms, nr, vr);
        batch.push_label_at(at);
    }
    while e < ext.len() {
        push_ext(batch, memo, e);
        e += 1;
    }
}
