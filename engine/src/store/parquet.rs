//! Parquet blocks in the bucket store: a block directory holding Parquet shards
//! (`N.labels.parquet`, `N.chunks.parquet`, see `crate::parquet`) is served from them,
//! beside the TSDB blocks and through the same Series stream and label APIs.
//!
//! Which blocks are read as Parquet, [`ParquetMode`] says. A Parquet block's selection is
//! read row group by row group, its series get the block's external labels and lose the
//! replica labels, and are sorted by label set before they join the stream (the files sort
//! by metric name first); it is held whole, bounded by the series limit.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::core::StoreCore;
use super::form::StreamBatch;
use super::read::PartResult;
use super::series::SeriesQuery;
use super::{BucketStore, StoreError};
use crate::block::BlockMeta;
use crate::labels::{Label, Labels, external_matchers};
use crate::parquet::read::{ChunkPages, KeptRows, Matched, ParquetShard};
use crate::parquet::{ParquetError, labels_file};
use crate::shard::ShardSet;

/// Which blocks the store reads from their Parquet shards (`--store.parquet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetMode {
    /// Only blocks that have Parquet shards and no TSDB index.
    #[default]
    Auto,
    /// Every block that has Parquet shards, even with a TSDB index beside them.
    Prefer,
    /// None: Parquet shards are ignored.
    Off,
}

impl std::str::FromStr for ParquetMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ParquetMode::Auto),
            "prefer" => Ok(ParquetMode::Prefer),
            "off" => Ok(ParquetMode::Off),
            other => Err(format!(
                "unknown Parquet mode {other:?} (auto, prefer, off)"
            )),
        }
    }
}

/// A block served from its Parquet shards.
#[derive(Debug)]
pub struct ParquetBlock {
    /// meta.json.
    pub meta: BlockMeta,
    /// External labels from the Thanos section, sorted.
    pub ext_labels: Labels,
    /// The shards, in number order.
    pub shards: Vec<ParquetShard>,
    id: String,
}

impl ParquetBlock {
    /// The block's ULID as a string.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Downsampling resolution, ms (0 = raw).
    pub fn resolution(&self) -> i64 {
        self.meta.resolution()
    }

    /// Rows over all shards.
    pub fn num_series(&self) -> u64 {
        self.shards.iter().map(ParquetShard::num_rows).sum()
    }
}

impl BucketStore {
    /// The Parquet blocks served.
    pub fn parquet_blocks(&self) -> Vec<Arc<ParquetBlock>> {
        self.parquet
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether block `id` has Parquet shards.
    pub(super) async fn has_parquet(&self, id: ulid::Ulid) -> Result<bool, StoreError> {
        Ok(self
            .bucket
            .exists(&format!("{id}/{}", labels_file(0)))
            .await?)
    }

    /// Opens the Parquet shards of block `id`.
    pub(super) async fn load_parquet(
        &self,
        id: ulid::Ulid,
        meta: BlockMeta,
    ) -> Result<ParquetBlock, StoreError> {
        let listed = self.bucket.list(&format!("{id}/")).await?;
        let mut numbers: Vec<usize> = listed
            .iter()
            .filter_map(|o| {
                let name = o.path.rsplit('/').next()?;
                name.strip_suffix(".labels.parquet")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        if numbers.iter().enumerate().any(|(i, &n)| i != n) || numbers.is_empty() {
            return Err(ParquetError::layout(
                &format!("{id}/"),
                format!("shards are not numbered 0..n: {numbers:?}"),
            )
            .into());
        }
        let dir = id.to_string();
        let shards = futures::future::try_join_all(
            numbers
                .iter()
                .map(|&n| ParquetShard::open(&self.bucket, &dir, n)),
        )
        .await?;
        let ext_labels = meta.external_labels();
        Ok(ParquetBlock {
            id: dir,
            meta,
            ext_labels,
            shards,
        })
    }

    /// The Parquet blocks a Series request reads: overlapping its range, of a resolution it
    /// accepts, with external labels its matchers allow.
    pub(super) fn select_parquet(&self, q: &SeriesQuery) -> Vec<Arc<ParquetBlock>> {
        if q.min_time > q.max_time {
            return Vec::new();
        }
        self.parquet_blocks()
            .into_iter()
            .filter(|b| b.meta.min_time <= q.max_time && b.meta.max_time > q.min_time)
            .filter(|b| q.every_resolution || b.resolution() <= q.max_resolution_window)
            .filter(|b| external_matchers(&b.ext_labels, &q.matchers).is_some())
            .collect()
    }
}

/// Compressed chunk bytes a window of stripes fetches at once, at most (one page more where a
/// page is larger); a producer holds two windows, the one decoded and the next. Large, so that
/// a scan makes few requests to object storage. Tests use a small window, so that several are
/// read.
const WINDOW_BYTES: u64 = if cfg!(test) { 4 << 10 } else { 64 << 20 };
/// Stripes per store core a small selection is cut into at least (down to
/// [`MIN_STRIPE_ROWS`] rows a stripe).
const STRIPES_PER_CORE: usize = 2;
/// Rows a stripe holds at least, however large its series.
const MIN_STRIPE_ROWS: usize = 256;
/// Rows a stripe holds at most in tests, so that small blocks are cut into several.
const TEST_STRIPE_ROWS: usize = 7;
/// Bytes of answer a stripe makes, about: a few MiB, so that its buffer comes from and goes
/// back to the store's pool of frame buffers, and the cores take turns often.
const STRIPE_BYTES: usize = 4 << 20;
/// Bytes a series takes in an answer beside its chunks' bytes and labels, about.
const SERIES_OVERHEAD: usize = 48;

/// What a shard's producer hands each stripe's decoding.
struct ShardRead<B: StreamBatch> {
    block: Arc<ParquetBlock>,
    shard: usize,
    q: SeriesQuery,
    form: B::Form,
}

/// Reads shard `shard` of a Parquet block's part of a Series answer and sends it in batches of
/// about `batch_bytes`, the last one marked; stops when the reader goes away.
///
/// A row group's kept rows are cut into stripes of about a batch each, along the pages of
/// its chunk column; their pages are fetched a window of stripes at a time, and the stripes
/// are decoded into batches on the store's cores, as many at once as there are cores, and
/// sent in row order. Rows whose served labels keep the files' order are sent as read (see
/// [`ParquetShard::serves_in_row_order`]); otherwise the shard's selection is read whole and
/// sorted first.
#[allow(clippy::too_many_arguments)]
pub(super) async fn produce_parquet<B: StreamBatch>(
    bucket: crate::bucket::Bucket,
    cores: Arc<ShardSet<StoreCore>>,
    block: Arc<ParquetBlock>,
    shard: usize,
    q: SeriesQuery,
    limit: u64,
    batch_bytes: usize,
    form: B::Form,
    tx: flume::Sender<PartResult<B>>,
) {
    let read = Arc::new(ShardRead::<B> {
        block,
        shard,
        q,
        form,
    });
    if let Err(e) = produce_shard(&bucket, &cores, &read, limit, batch_bytes, &tx).await {
        let _ = tx.send_async(Err(e)).await;
    }
}

async fn produce_shard<B: StreamBatch>(
    bucket: &crate::bucket::Bucket,
    cores: &Arc<ShardSet<StoreCore>>,
    read: &Arc<ShardRead<B>>,
    limit: u64,
    batch_bytes: usize,
    tx: &flume::Sender<PartResult<B>>,
) -> Result<(), StoreError> {
    let (block, q) = (&read.block, &read.q);
    let shard = &block.shards[read.shard];
    let Some(matchers) = external_matchers(&block.ext_labels, &q.matchers) else {
        let _ = tx.send_async(Ok((B::empty(&read.form), true))).await;
        return Ok(());
    };
    let in_range = q.max_time >= shard.min_time && q.min_time <= shard.max_time;
    let row_groups = if in_range { shard.num_row_groups() } else { 0 };
    // When the files' columns cannot promise the served order, every row group's kept rows
    // are read first and their served labels checked, before any chunk is read.
    let mut first_read: Vec<Option<Arc<KeptRows>>> = Vec::new();
    let mut whole = false;
    if !shard.serves_in_row_order(&block.ext_labels, &q.without_replica_labels) {
        for rg in 0..row_groups {
            first_read.push(shard.kept_rows(bucket, rg, &matchers).await?.map(Arc::new));
        }
        whole = !served_in_order(block, shard, first_read.iter().flatten(), q);
    }
    let mut held: Vec<B> = Vec::new();
    let mut series = 0u64;
    for rg in 0..row_groups {
        // Rows read in order have their labels read while the first chunk pages are fetched.
        let (rows, pending) = match first_read.get_mut(rg) {
            Some(k) => match k.take() {
                Some(k) => (k.rows.clone(), RowLabels::Read(k)),
                None => continue,
            },
            None => match shard.matched(bucket, rg, &matchers).await? {
                Some(m) => (m.rows.clone(), RowLabels::ToRead(m)),
                None => continue,
            },
        };
        let cols: Arc<Vec<usize>> = Arc::new(if q.skip_chunks {
            Vec::new()
        } else {
            shard.chunk_columns(q.min_time, q.max_time)
        });
        let per_row = shard.chunk_bytes_per_row(rg, &cols) + 128;
        // A selection of fewer rows than the cores would fill with stripes of the usual size
        // is cut finer, so that every core decodes a part and the first part is sent sooner.
        let target = if cfg!(test) {
            TEST_STRIPE_ROWS
        } else {
            let by_bytes = (STRIPE_BYTES.min(batch_bytes) as u64 / per_row) as usize;
            let spread = rows.len().div_ceil(STRIPES_PER_CORE * cores.cores());
            by_bytes.min(spread).max(MIN_STRIPE_ROWS)
        };
        let starts = cols.first().and_then(|&c| shard.chunk_page_starts(rg, c));
        let stripes = cut_stripes(&rows, starts.as_deref(), target);
        let windows = windows_of(&stripes, per_row);
        let fetch = |win: &Range<usize>| {
            let rows = rows[stripes[win.start].start..stripes[win.end - 1].end].to_vec();
            let (bucket, block, cols, si) =
                (bucket.clone(), read.block.clone(), cols.clone(), read.shard);
            Prefetch(tokio::spawn(async move {
                let shard = &block.shards[si];
                futures::future::try_join_all(
                    cols.iter()
                        .map(|&c| shard.fetch_chunk_pages(&bucket, rg, c, &rows)),
                )
                .await
            }))
        };
        // The next window's pages are read while this one's stripes are decoded.
        let mut next = windows.first().map(fetch);
        let kept = match pending {
            RowLabels::Read(k) => k,
            RowLabels::ToRead(m) => Arc::new(shard.with_labels(bucket, m).await?),
        };
        for (wi, win) in windows.iter().enumerate() {
            let Some(mut this) = next.take() else {
                break;
            };
            let pages = Arc::new((&mut this.0).await.map_err(|_| StoreError::Stopped)??);
            next = windows.get(wi + 1).map(fetch);
            let jobs = stripes[win.clone()]
                .iter()
                .cloned()
                .enumerate()
                .map(|(j, range)| {
                    let (read, kept, cols, pages) =
                        (read.clone(), kept.clone(), cols.clone(), pages.clone());
                    cores.call(read.shard + j, move |_| async move {
                        stripe_batch(&read, &kept, range, &cols, &pages)
                    })
                });
            let mut done = futures::stream::iter(jobs).buffered(cores.cores());
            while let Some(r) = done.next().await {
                let batch = r.map_err(|_| StoreError::Stopped)??;
                series += batch.len() as u64;
                if limit > 0 && series > limit {
                    return Err(StoreError::LimitExceeded {
                        limit: "series",
                        value: series,
                        max: limit,
                    });
                }
                if whole {
                    held.push(batch);
                } else if !batch.is_empty() && tx.send_async(Ok((batch, false))).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    if whole {
        let mut all = B::empty(&read.form);
        for b in &held {
            for i in 0..b.len() {
                all.copy_series(b, i);
            }
        }
        drop(held);
        let all = all.sorted();
        let mut batch = B::empty(&read.form);
        for i in 0..all.len() {
            batch.copy_series(&all, i);
            if batch.bytes() >= batch_bytes {
                let full = std::mem::replace(&mut batch, B::empty(&read.form));
                if tx.send_async(Ok((full, false))).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = tx.send_async(Ok((batch, true))).await;
    } else {
        let _ = tx.send_async(Ok((B::empty(&read.form), true))).await;
    }
    Ok(())
}

/// A row group's kept rows, with their labels read or still to read.
enum RowLabels {
    Read(Arc<KeptRows>),
    ToRead(Matched),
}

/// A window's page reads, running on the runtime; stopped when dropped unfinished (the
/// producer returned early).
struct Prefetch(tokio::task::JoinHandle<Result<Vec<ChunkPages>, crate::parquet::ParquetError>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Groups stripes into windows (ranges of stripe indexes) of at most [`WINDOW_BYTES`] of
/// chunk pages each (estimated at `per_row` bytes a row; a stripe larger than that alone).
fn windows_of(stripes: &[Range<usize>], per_row: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut w = 0;
    while w < stripes.len() {
        let mut end = w + 1;
        let mut bytes = stripes[w].len() as u64 * per_row;
        while end < stripes.len() && bytes + stripes[end].len() as u64 * per_row <= WINDOW_BYTES {
            bytes += stripes[end].len() as u64 * per_row;
            end += 1;
        }
        out.push(w..end);
        w = end;
    }
    out
}

/// Decodes one stripe (`range` of the kept rows) into a batch: its chunk values from `pages`,
/// the chunks of each row overlapping the request, its labels as served.
fn stripe_batch<B: StreamBatch>(
    read: &ShardRead<B>,
    kept: &KeptRows,
    range: Range<usize>,
    cols: &[usize],
    pages: &[ChunkPages],
) -> Result<B, StoreError> {
    let (block, q) = (&read.block, &read.q);
    let shard = &block.shards[read.shard];
    let rows = &kept.rows[range.clone()];
    let vals = cols
        .iter()
        .zip(pages)
        .map(|(&c, p)| shard.chunk_values(kept.rg, c, p, rows))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = B::empty(&read.form);
    let ext: Vec<(&[u8], &[u8])> = block
        .ext_labels
        .iter()
        .map(|l| (l.name.as_bytes(), l.value.as_bytes()))
        .collect();
    let (mut stored, mut pairs) = (Vec::new(), Vec::new());
    // Room for the batch at once: the values' bytes, and every series' labels as long as the
    // first one's.
    if !rows.is_empty() {
        kept.label_pairs(shard, range.start, &mut stored);
        served_pairs(&stored, &ext, &q.without_replica_labels, &mut pairs);
        let label_bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 6).sum();
        let value_bytes: usize = vals.iter().flatten().map(Bytes::len).sum();
        batch.reserve_owned(value_bytes + rows.len() * (label_bytes + SERIES_OVERHEAD));
    }
    let mut chunks = Vec::new();
    for (k, &row) in rows.iter().enumerate() {
        chunks.clear();
        for v in &vals {
            shard.row_chunks(&v[k], row, q.min_time, q.max_time, &mut chunks)?;
        }
        if !q.skip_chunks && chunks.is_empty() {
            continue;
        }
        kept.label_pairs(shard, range.start + k, &mut stored);
        served_pairs(&stored, &ext, &q.without_replica_labels, &mut pairs);
        if let Some(sh) = &q.shard {
            // The shard's hash is of the served label set.
            let labels =
                Labels::from_sorted(pairs.iter().map(|(n, v)| Label::from_bytes(n, v)).collect());
            if !sh.matches(&labels) {
                continue;
            }
        }
        batch.push_owned(&pairs, &chunks);
    }
    Ok(batch)
}

/// Whether the served labels of the kept rows `kepts` (in row order) are in label-set order.
fn served_in_order<'a>(
    block: &ParquetBlock,
    shard: &ParquetShard,
    kepts: impl Iterator<Item = &'a Arc<KeptRows>>,
    q: &SeriesQuery,
) -> bool {
    let ext: Vec<(&[u8], &[u8])> = block
        .ext_labels
        .iter()
        .map(|l| (l.name.as_bytes(), l.value.as_bytes()))
        .collect();
    let (mut stored, mut prev, mut cur) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = true;
    for kept in kepts {
        for k in 0..kept.rows.len() {
            kept.label_pairs(shard, k, &mut stored);
            served_pairs(&stored, &ext, &q.without_replica_labels, &mut cur);
            if !first && cur < prev {
                return false;
            }
            first = false;
            std::mem::swap(&mut prev, &mut cur);
        }
    }
    true
}

/// The served labels of a series whose stored labels are `stored` (sorted by name): the
/// external labels `ext` (sorted) set, over a stored label of the same name, and the labels
/// named in `removed` taken off, into `out`.
fn served_pairs<'a>(
    stored: &[(&'a [u8], &'a [u8])],
    ext: &[(&'a [u8], &'a [u8])],
    removed: &[String],
    out: &mut Vec<(&'a [u8], &'a [u8])>,
) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < stored.len() || j < ext.len() {
        let next = match (stored.get(i), ext.get(j)) {
            (Some(s), Some(e)) => match s.0.cmp(e.0) {
                std::cmp::Ordering::Less => {
                    i += 1;
                    *s
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    *e
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    *e
                }
            },
            (Some(s), None) => {
                i += 1;
                *s
            }
            (None, Some(e)) => {
                j += 1;
                *e
            }
            (None, None) => break,
        };
        if !removed.iter().any(|r| r.as_bytes() == next.0) {
            out.push(next);
        }
    }
}

/// Cuts the kept rows into stripes of about `target` rows, each ending where a page of the
/// chunk column starts (`starts`: each page's first row), so that no page is decoded twice.
fn cut_stripes(rows: &[u32], starts: Option<&[usize]>, target: usize) -> Vec<Range<usize>> {
    let page = |r: u32| starts.map_or(0, |s| s.partition_point(|&f| f <= r as usize));
    let mut out = Vec::new();
    let mut begin = 0;
    for k in 1..rows.len() {
        if k - begin >= target && (starts.is_none() || page(rows[k]) != page(rows[k - 1])) {
            out.push(begin..k);
            begin = k;
        }
    }
    if begin < rows.len() {
        out.push(begin..rows.len());
    }
    out
}

impl From<ParquetError> for StoreError {
    fn from(e: ParquetError) -> Self {
        match e {
            ParquetError::Bucket(b) => StoreError::Bucket(b),
            other => StoreError::Parquet(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cut_stripes, served_pairs};

    #[test]
    fn served_labels_take_external_labels_over_stored_and_lose_removed_ones() {
        let stored: Vec<(&[u8], &[u8])> = vec![
            (b"__name__", b"m"),
            (b"cluster", b"mine"),
            (b"i", b"1"),
            (b"replica", b"a"),
        ];
        let ext: Vec<(&[u8], &[u8])> = vec![(b"cluster", b"eu"), (b"zone", b"z")];
        let mut out = Vec::new();
        served_pairs(&stored, &ext, &["replica".to_string()], &mut out);
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"__name__", b"m"),
            (b"cluster", b"eu"),
            (b"i", b"1"),
            (b"zone", b"z"),
        ];
        assert_eq!(out, want);
        served_pairs(&stored, &[], &[], &mut out);
        assert_eq!(out, stored);
    }

    #[test]
    fn stripes_end_where_pages_start() {
        let rows: Vec<u32> = (0..20).collect();
        // Without page bounds: every `target` rows.
        assert_eq!(cut_stripes(&rows, None, 8), vec![0..8, 8..16, 16..20]);
        // Pages of 5 rows: a stripe runs on to the end of the page it fills in.
        let starts = [0, 5, 10, 15];
        assert_eq!(cut_stripes(&rows, Some(&starts), 6), vec![0..10, 10..20]);
        assert_eq!(
            cut_stripes(&rows, Some(&starts), 1),
            vec![0..5, 5..10, 10..15, 15..20]
        );
        // Kept rows with gaps: pages without kept rows are passed over.
        let kept = [1, 2, 11, 12, 13, 19];
        assert_eq!(cut_stripes(&kept, Some(&starts), 2), vec![0..2, 2..5, 5..6]);
        assert_eq!(
            cut_stripes(&[], Some(&starts), 2),
            Vec::<std::ops::Range<usize>>::new()
        );
    }
}
