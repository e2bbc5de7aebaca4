//! Parquet blocks in the bucket store: a block directory holding Parquet shards
//! (`N.labels.parquet`, `N.chunks.parquet`, see `crate::parquet`) is served from them,
//! beside the TSDB blocks and through the same Series stream and label APIs.
//!
//! Which blocks are read as Parquet, [`ParquetMode`] says. A Parquet block's selection is
//! read row group by row group, its series get the block's external labels and lose the
//! replica labels, and are sorted by label set before they join the stream (the files sort
//! by metric name first); it is held whole, bounded by the series limit.

use std::sync::Arc;

use super::form::StreamBatch;
use super::read::PartResult;
use super::series::SeriesQuery;
use super::{BucketStore, StoreError};
use crate::block::BlockMeta;
use crate::labels::{Labels, external_matchers};
use crate::parquet::read::{ParquetSeries, ParquetShard};
use crate::parquet::{ParquetError, labels_file};

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

    /// The series of `q` this block serves, as served (external labels attached, replica
    /// labels removed, the shard's part only), sorted by label set; refused past `limit`
    /// series (0 = none).
    pub(super) async fn select(
        &self,
        bucket: &crate::bucket::Bucket,
        q: &SeriesQuery,
        limit: u64,
    ) -> Result<Vec<ParquetSeries>, StoreError> {
        let Some(matchers) = external_matchers(&self.ext_labels, &q.matchers) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in &self.shards {
            let found = s
                .select(bucket, &matchers, q.min_time, q.max_time, q.skip_chunks)
                .await?;
            for mut series in found {
                if !self.ext_labels.is_empty() {
                    series.labels = series.labels.with_external(&self.ext_labels);
                }
                if !q.without_replica_labels.is_empty() {
                    let kept = series
                        .labels
                        .iter()
                        .filter(|l| !q.without_replica_labels.iter().any(|w| *w == l.name))
                        .cloned()
                        .collect();
                    series.labels = Labels::from_sorted(kept);
                }
                if q.shard
                    .as_ref()
                    .is_some_and(|sh| !sh.matches(&series.labels))
                {
                    continue;
                }
                out.push(series);
                if limit > 0 && out.len() as u64 > limit {
                    return Err(StoreError::LimitExceeded {
                        limit: "series",
                        value: out.len() as u64,
                        max: limit,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
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

/// Reads a Parquet block's part of a Series answer and sends it in batches of about
/// `batch_bytes`, the last one marked; stops when the reader goes away.
pub(super) async fn produce_parquet<B: StreamBatch>(
    store_bucket: crate::bucket::Bucket,
    block: Arc<ParquetBlock>,
    q: SeriesQuery,
    limit: u64,
    batch_bytes: usize,
    form: B::Form,
    tx: flume::Sender<PartResult<B>>,
) {
    let series = match block.select(&store_bucket, &q, limit).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send_async(Err(e)).await;
            return;
        }
    };
    let mut batch = B::empty(&form);
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    for s in &series {
        pairs.clear();
        pairs.extend(
            s.labels
                .iter()
                .map(|l| (l.name.as_bytes(), l.value.as_bytes())),
        );
        batch.push_owned(&pairs, &s.chunks);
        if batch.bytes() >= batch_bytes {
            let full = std::mem::replace(&mut batch, B::empty(&form));
            if tx.send_async(Ok((full, false))).await.is_err() {
                return;
            }
        }
    }
    let _ = tx.send_async(Ok((batch, true))).await;
}

impl From<ParquetError> for StoreError {
    fn from(e: ParquetError) -> Self {
        match e {
            ParquetError::Bucket(b) => StoreError::Bucket(b),
            other => StoreError::Parquet(Box::new(other)),
        }
    }
}
