//! The streamed Series answer. Each selected block's matchers are resolved on the core that
//! owns it into bitpacked series refs; the refs are cut into stripes of about one batch each,
//! and stripe `k` is read on core `owner + k` (see `read.rs`) and sent over that core's
//! bounded channel for the block. Since refs ascend in label order, the caller gets a block's
//! series in order by taking stripe after stripe from the cores in turn: the cores read in
//! parallel and nothing is compared or copied per series. Blocks are then merged per series
//! where several hold the same one, and passed through a batch at a time where they do not
//! overlap.
//!
//! The batches come in the form the caller asks for ([`StreamBatch`]): decoded series
//! ([`BucketStore::series_stream`]) or StoreAPI frames written on the cores
//! ([`BucketStore::series_wire`]).
//!
//! Memory is bounded by the number of parts times a few batches, and batches are sized from
//! the store's stream budget, so a query that selects everything costs no more than one that
//! selects little, only longer.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::StreamExt;

use super::batch::SeriesBatch;
use super::block::BucketBlock;
use super::form::StreamBatch;
use super::postings::PackedRefs;
use super::read::{BATCH_SERIES, Part, PartResult, Prepared, Usage, produce};
use super::resolve::resolve;
use super::series::{SeriesQuery, StoreSeries, block_matchers};
use super::wire::{WireBatch, WireForm, WireFraming};
use super::{BucketStore, StoreError};

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

/// One block's stream as the caller reads it: stripe `k` comes over `rxs[k % rxs.len()]`.
struct Source<B> {
    rxs: Vec<flume::Receiver<PartResult<B>>>,
    stripes: usize,
    stripe: usize,
    batch: B,
    pos: usize,
    block: String,
    /// Attached external labels or removed replica labels may move a series past a batch
    /// boundary: the last series of each batch is held back until the next batch shows where
    /// it goes.
    reorder: bool,
    held: B,
    pending: Option<B>,
}

/// A sorted stream of series batches answering a Series request.
#[derive(Debug)]
pub struct SeriesStream<B: StreamBatch = SeriesBatch> {
    /// Problems with single blocks (partial response), so far.
    pub warnings: Vec<String>,
    /// ULIDs of the blocks queried.
    pub queried_blocks: Vec<String>,
    sources: Vec<Source<B>>,
    /// Indexes into `sources` of those with a current series, sorted by it.
    heads: Vec<usize>,
    started: bool,
    abort_on_error: bool,
    limit: u64,
    returned: u64,
    /// Byte target of an output batch.
    batch_target: usize,
    form: B::Form,
    metrics: Arc<super::StoreMetrics>,
}

impl<B> std::fmt::Debug for Source<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("block", &self.block)
            .field("stripe", &self.stripe)
            .finish()
    }
}

impl BucketStore {
    /// Starts answering a Series request as a stream of sorted batches of decoded series; the
    /// blocks' parts are read on the engine cores while the caller consumes the stream.
    pub async fn series_stream(&self, q: &SeriesQuery) -> Result<SeriesStream, StoreError> {
        self.stream_of(q, ()).await
    }

    /// As [`BucketStore::series_stream`], with the series written as StoreAPI frames on the
    /// engine cores, framed as `framing` says.
    pub async fn series_wire(
        &self,
        q: &SeriesQuery,
        framing: WireFraming,
    ) -> Result<SeriesStream<WireBatch>, StoreError> {
        let form = WireForm {
            framing,
            pool: Some(self.wire_pool.clone()),
        };
        self.stream_of(q, form).await
    }

    async fn stream_of<B: StreamBatch>(
        &self,
        q: &SeriesQuery,
        form: B::Form,
    ) -> Result<SeriesStream<B>, StoreError> {
        self.check_series_query(q)?;
        self.metrics.series_requests.fetch_add(1, Relaxed);
        // Chunks outside the store's time window are not served: another shard holds them.
        let (min_time, max_time) = self.clamp_to_window(q.min_time, q.max_time);
        let clamped = SeriesQuery {
            min_time,
            max_time,
            ..q.clone()
        };
        let q = &clamped;
        let blocks = self.select_blocks(q);
        let cores = self.cores.cores();
        let local = self.bucket.local_root().is_some();
        // Every part holds a few batches: the budget is shared by all parts of the request.
        let parts_guess = (blocks.len() * cores).max(1);
        let batch_bytes = (self.opts.stream_buffer_bytes as usize
            / ((CHANNEL_BATCHES + 2) * parts_guess))
            .max(MIN_BATCH_BYTES);
        let prep = Arc::new(Prepared::<B> {
            q: q.clone(),
            limits: self.opts.limits,
            usage: Usage::default(),
            batch_bytes,
            symbol_bytes: (self.opts.index_cache_bytes as usize / cores) / SYMBOL_SHARE,
            form: form.clone(),
        });
        let resolved = self
            .resolve_all(&blocks, Arc::new(q.matchers.clone()))
            .await;
        // The series limit is known to be passed before any series is read when one block's
        // postings alone hold more: a selection of every series of a large block is refused
        // at once, not after streaming up to the limit. (Several blocks may hold the same
        // series, so their sum is no bound; the count as series are served stays the check.)
        let max = self.opts.limits.series;
        let most = resolved
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.len() as u64)
            .max()
            .unwrap_or(0);
        if max > 0 && most > max {
            self.metrics.limit_refusals.fetch_add(1, Relaxed);
            return Err(StoreError::LimitExceeded {
                limit: "series",
                value: most,
                max,
            });
        }
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
            form,
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
                self.cores
                    .spawn(b.owner() + first, move |core| async move {
                        if stripes > 1 {
                            // A selection of more than one batch waits behind the small
                            // ones on its core, batch by batch.
                            crate::shard::back_lane().await;
                        }
                        produce(core, part, p, tx).await;
                    })
                    .await;
                rxs.push(rx);
            }
            stream.sources.push(Source {
                rxs,
                stripes,
                stripe: 0,
                batch: B::empty(&stream.form),
                pos: 0,
                block: b.id().to_string(),
                reorder,
                held: B::empty(&stream.form),
                pending: None,
            });
        }
        // Parquet blocks: one producer per shard, sending its rows in label-set order.
        for b in self.select_parquet(q) {
            stream.queried_blocks.push(b.id().to_string());
            for shard in 0..b.shards.len() {
                let (tx, rx) = flume::bounded(CHANNEL_BATCHES);
                self.runtime.spawn(super::parquet::produce_parquet(
                    self.bucket.clone(),
                    self.cores.clone(),
                    b.clone(),
                    shard,
                    q.clone(),
                    self.opts.limits.series,
                    batch_bytes,
                    stream.form.clone(),
                    tx,
                ));
                stream.sources.push(Source {
                    rxs: vec![rx],
                    stripes: 1,
                    stripe: 0,
                    batch: B::empty(&stream.form),
                    pos: 0,
                    block: b.id().to_string(),
                    reorder: false,
                    held: B::empty(&stream.form),
                    pending: None,
                });
            }
        }
        Ok(stream)
    }

    /// Resolves every block's selection on its owner core, a few blocks at a time per core.
    async fn resolve_all(
        &self,
        blocks: &[Arc<BucketBlock>],
        matchers: Arc<Vec<crate::labels::Matcher>>,
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
                let p = matchers.clone();
                let call = self.cores.call(core, move |c| async move {
                    futures::stream::iter(bs)
                        .map(|b| {
                            let (c, p) = (c.clone(), p.clone());
                            async move {
                                match block_matchers(&b, &p) {
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

impl<B: StreamBatch> SeriesStream<B> {
    /// Adds series held in memory to what the stream merges, as one more source after the
    /// blocks (so the blocks' chunks come first where a series is in both): each with its
    /// labels as served (external labels set, replica labels taken off) and its chunks in
    /// time order, the series sorted by labels. A sidecar merges the head Prometheus
    /// streams into its blocks' answer this way. Call before the first batch is taken.
    pub fn add_sorted(&mut self, series: Vec<StoreSeries>) {
        debug_assert!(!self.started, "a source added after the stream started");
        if series.is_empty() {
            return;
        }
        let (tx, rx) = flume::unbounded();
        let mut stripes = 0;
        for part in series.chunks(BATCH_SERIES) {
            let mut batch = B::empty(&self.form);
            for s in part {
                let labels: Vec<(&[u8], &[u8])> = s
                    .labels
                    .iter()
                    .map(|l| (l.name.as_bytes(), l.value.as_bytes()))
                    .collect();
                batch.push_owned(&labels, &s.chunks);
            }
            // The receiver is held below: the send cannot fail.
            let _ = tx.send(Ok((batch, true)));
            stripes += 1;
        }
        self.sources.push(Source {
            rxs: vec![rx],
            stripes,
            stripe: 0,
            batch: B::empty(&self.form),
            pos: 0,
            block: "head".to_string(),
            reorder: false,
            held: B::empty(&self.form),
            pending: None,
        });
    }

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
    async fn recv(&mut self, s: usize) -> Result<Option<B>, StoreError> {
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
    async fn next_of(&mut self, s: usize) -> Result<Option<B>, StoreError> {
        if !self.sources[s].reorder {
            return self.recv(s).await;
        }
        loop {
            if let Some(b) = self.sources[s].pending.take() {
                return Ok(Some(b));
            }
            let Some(mut b) = self.recv(s).await? else {
                let held = std::mem::replace(&mut self.sources[s].held, B::empty(&self.form));
                return Ok((!held.is_empty()).then_some(held));
            };
            let src = &mut self.sources[s];
            if src.held.is_empty() || src.held.cmp_series(0, &b, 0).is_lt() {
                // The usual case: the held series goes first; hold back the batch's last.
                let out = std::mem::replace(&mut src.held, B::empty(&self.form));
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
            let mut all = std::mem::replace(&mut src.held, B::empty(&self.form));
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
                src.batch = B::empty(&self.form);
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
    pub async fn next_batch(&mut self) -> Result<Option<B>, StoreError> {
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
            let empty = B::empty(&self.form);
            let mut out = std::mem::replace(&mut self.sources[s].batch, empty);
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
        let mut out = B::empty(&self.form);
        let mut parts: Vec<usize> = Vec::new();
        while let Some(&s) = self.heads.first() {
            if self.limit > 0 && self.returned >= self.limit {
                self.heads.clear();
                break;
            }
            let src = &self.sources[s];
            // A series a block holds twice after label rewriting is not cut between batches.
            let same =
                !out.is_empty() && out.cmp_series(out.len() - 1, &src.batch, src.pos).is_eq();
            if !same
                && (out.len() >= BATCH_SERIES
                    || out.bytes() >= self.batch_target
                    || (!out.is_empty() && self.whole_batch_first()))
            {
                break;
            }
            // The same series in several blocks: every source holding it has it as its
            // current series, so they lead the heads together.
            parts.clear();
            parts.push(s);
            for &t in &self.heads[1..] {
                if self.cmp_heads(s, t).is_ne() {
                    break;
                }
                parts.push(t);
            }
            let before = out.len();
            let of: Vec<(&B, usize)> = parts
                .iter()
                .map(|&k| (&self.sources[k].batch, self.sources[k].pos))
                .collect();
            out.push_merged(&of)?;
            self.returned += (out.len() - before) as u64;
            self.heads.drain(..parts.len());
            for &k in &parts {
                self.sources[k].pos += 1;
                if self.fill(k).await? {
                    self.insert_head(k);
                }
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.count(out)))
    }

    fn count(&self, out: B) -> B {
        let m = &self.metrics;
        m.series_returned.fetch_add(out.len() as u64, Relaxed);
        m.chunks_returned
            .fetch_add(out.total_chunks() as u64, Relaxed);
        out
    }
}
