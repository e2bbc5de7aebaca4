//! Block sync: list `<ULID>/meta.json` in the bucket, load the new blocks this store serves
//! (building their index-headers; which blocks, `selection` says), drop deleted blocks and
//! those whose deletion mark is older than the delay, and skip (log and count) blocks that
//! fail to load while the rest keep serving.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures::StreamExt;

use ulid::Ulid;

use super::block::BucketBlock;
use super::header::{HEADER_FILENAME, IndexHeader};
use super::parquet::{ParquetBlock, ParquetMode};
use super::selection::{Excluded, now_ms};
use super::{BucketStore, StoreError};
use crate::block::label_filter::LABEL_FILTER_FILENAME;
use crate::block::meta::META_FILENAME;
use crate::block::{BlockMeta, DeletionMark};
use crate::bucket::BucketError;

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Blocks served after the sync.
    pub loaded: usize,
    /// Blocks newly loaded.
    pub added: usize,
    /// Blocks no longer served (deleted or marked for deletion).
    pub dropped: usize,
    /// Directories without meta.json (uploads in progress or abandoned).
    pub partial: usize,
    /// Blocks that failed to load, with the reason.
    pub failed: Vec<(String, String)>,
    /// Blocks left to other shards: outside the time window.
    pub time_excluded: usize,
    /// Blocks left to other shards: dropped by the relabel rules.
    pub label_excluded: usize,
}

/// What a sync's visits share.
struct VisitCtx<'a> {
    current: &'a HashMap<Ulid, Arc<BucketBlock>>,
    current_parquet: &'a HashMap<Ulid, Arc<ParquetBlock>>,
    now_ms: i64,
    now_s: i64,
    delay: i64,
}

/// The outcome of one listed block in a sync.
enum Visit {
    /// No meta.json yet: an upload in progress or abandoned.
    Partial,
    /// Outside this store's time window.
    TimeExcluded,
    /// Dropped by this store's relabel rules.
    LabelExcluded,
    /// Marked for deletion longer ago than the delay.
    Deleted,
    /// Already loaded and still served.
    Kept(Arc<BucketBlock>),
    /// Newly loaded.
    Added(Arc<BucketBlock>),
    /// Served from its Parquet shards: newly loaded (true) or kept.
    Parquet(Arc<ParquetBlock>, bool),
    /// Could not be read or loaded; `keep` is the loaded block kept serving through a
    /// transient error.
    Failed {
        reason: String,
        keep: Option<Arc<BucketBlock>>,
    },
}

impl BucketStore {
    /// Brings the served blocks in line with the bucket. An error means the bucket could not
    /// be listed; the previously loaded blocks keep being served.
    pub async fn sync(&self) -> Result<SyncReport, StoreError> {
        self.metrics.syncs.fetch_add(1, Relaxed);
        let listed = match self.list_blocks().await {
            Ok(l) => l,
            Err(e) => {
                self.metrics.sync_failures.fetch_add(1, Relaxed);
                return Err(e);
            }
        };
        let mut report = SyncReport::default();
        let current: HashMap<Ulid, Arc<BucketBlock>> = self
            .blocks()
            .into_iter()
            .map(|b| (b.meta.ulid, b))
            .collect();
        let current_parquet: HashMap<Ulid, Arc<ParquetBlock>> = self
            .parquet_blocks()
            .into_iter()
            .map(|b| (b.meta.ulid, b))
            .collect();
        let now_ms = now_ms();
        let now_s = now_ms.div_euclid(1000);
        let delay = self.opts.ignore_deletion_marks_delay.as_secs() as i64;
        // Blocks are visited concurrently (`--block-sync-concurrency`): over object storage
        // each takes several sequential requests (meta.json, deletion mark, chunk listing,
        // the index's TOC and tables), and one at a time a cold start on thousands of blocks
        // would wait out every request's latency in turn.
        let ctx = VisitCtx {
            current: &current,
            current_parquet: &current_parquet,
            now_ms,
            now_s,
            delay,
        };
        let visits: Vec<(Ulid, Visit)> = futures::stream::iter(listed.into_iter().map(|id| {
            let ctx = &ctx;
            async move { (id, self.visit(id, ctx).await) }
        }))
        .buffer_unordered(self.opts.block_sync_concurrency.max(1))
        .collect()
        .await;
        let mut next = Vec::new();
        let mut next_parquet = Vec::new();
        for (id, v) in visits {
            match v {
                Visit::Partial => report.partial += 1,
                Visit::TimeExcluded => report.time_excluded += 1,
                Visit::LabelExcluded => report.label_excluded += 1,
                Visit::Deleted => {}
                Visit::Kept(b) => next.push(b),
                Visit::Added(b) => {
                    self.metrics.block_loads.fetch_add(1, Relaxed);
                    report.added += 1;
                    next.push(b);
                }
                Visit::Parquet(b, added) => {
                    if added {
                        self.metrics.block_loads.fetch_add(1, Relaxed);
                        report.added += 1;
                    }
                    next_parquet.push(b);
                }
                Visit::Failed { reason, keep } => {
                    self.fail(&mut report, &id.to_string(), &reason);
                    next.extend(keep);
                }
            }
        }
        report.failed.sort();
        // A block whose samples another block holds whole (its compaction was stopped before
        // the sources were marked) is not served: its samples would be served twice.
        // Either form counts: a compacted block served from Parquet holds its sources whole.
        let copies = crate::compact::redundant(
            next.iter()
                .map(|b| &b.meta)
                .chain(next_parquet.iter().map(|b| &b.meta)),
        );
        if !copies.is_empty() {
            tracing::info!(
                blocks = copies.len(),
                "skipping blocks another block holds whole"
            );
            next.retain(|b| !copies.contains(&b.meta.ulid));
            next_parquet.retain(|b| !copies.contains(&b.meta.ulid));
        }
        next.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
        for id in current.keys() {
            if !next.iter().any(|b| b.meta.ulid == *id) {
                report.dropped += 1;
                self.metrics.block_drops.fetch_add(1, Relaxed);
                // Every core may hold parts of it (large selections are split).
                for core in 0..self.cores.cores() {
                    let id = *id;
                    self.cores
                        .spawn(core, move |c| async move { c.state().forget(id) })
                        .await;
                }
                let dir = self.data_dir.join(id.to_string());
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing index-header");
                }
            }
        }
        for id in current_parquet.keys() {
            if !next_parquet.iter().any(|b| b.meta.ulid == *id) {
                report.dropped += 1;
                self.metrics.block_drops.fetch_add(1, Relaxed);
            }
        }
        next_parquet.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
        report.loaded = next.len() + next_parquet.len();
        self.metrics
            .time_excluded
            .store(report.time_excluded as u64, Relaxed);
        self.metrics
            .label_excluded
            .store(report.label_excluded as u64, Relaxed);
        *self.blocks.write().unwrap_or_else(|p| p.into_inner()) = next;
        *self.parquet.write().unwrap_or_else(|p| p.into_inner()) = next_parquet;
        self.synced.store(true, Relaxed);
        tracing::info!(
            loaded = report.loaded,
            added = report.added,
            dropped = report.dropped,
            partial = report.partial,
            failed = report.failed.len(),
            time_excluded = report.time_excluded,
            label_excluded = report.label_excluded,
            "bucket sync done"
        );
        Ok(report)
    }

    /// What one listed block comes to: its meta.json read and checked against the store's
    /// selection and the deletion marks, and the block loaded when it is new.
    async fn visit(&self, id: Ulid, ctx: &VisitCtx<'_>) -> Visit {
        let failed = |e: String, keep: bool| Visit::Failed {
            reason: e,
            keep: if keep {
                ctx.current.get(&id).cloned()
            } else {
                None
            },
        };
        let meta_path = format!("{id}/{META_FILENAME}");
        let meta_bytes = match self.bucket.get(&meta_path).await {
            Ok(b) => b,
            Err(BucketError::NotFound { .. }) => return Visit::Partial,
            // A transient read error should not stop serving a loaded block.
            Err(e) => return failed(e.to_string(), true),
        };
        let meta = match BlockMeta::parse(&meta_bytes, Path::new(&meta_path)) {
            Ok(m) => m,
            Err(e) => return failed(e.to_string(), false),
        };
        // Blocks another shard serves are not loaded (and dropped if they were, as a relative
        // time window moves on).
        match self.opts.selection.check(&meta, ctx.now_ms) {
            Ok(()) => {}
            Err(Excluded::Time) => return Visit::TimeExcluded,
            Err(Excluded::Labels) => return Visit::LabelExcluded,
        }
        match self.deletion_mark(id).await {
            Ok(Some(mark)) if ctx.now_s - mark.deletion_time >= ctx.delay => return Visit::Deleted,
            Ok(_) => {}
            Err(e) => return failed(e.to_string(), false),
        }
        if let Some(b) = ctx.current.get(&id) {
            return Visit::Kept(b.clone());
        }
        if let Some(b) = ctx.current_parquet.get(&id) {
            return Visit::Parquet(b.clone(), false);
        }
        let parquet = |meta| async move {
            match self.load_parquet(id, meta).await {
                Ok(b) => Visit::Parquet(Arc::new(b), true),
                Err(e) => failed(e.to_string(), false),
            }
        };
        match self.opts.parquet {
            ParquetMode::Prefer => match self.has_parquet(id).await {
                Ok(true) => return parquet(meta).await,
                Ok(false) => {}
                Err(e) => return failed(e.to_string(), false),
            },
            ParquetMode::Auto | ParquetMode::Off => {}
        }
        match self.load_block(id, meta.clone(), &meta_path).await {
            Ok(b) => Visit::Added(Arc::new(b)),
            // A block converted to Parquet may have had its TSDB files removed.
            Err(e) if self.opts.parquet == ParquetMode::Auto => match self.has_parquet(id).await {
                Ok(true) => parquet(meta).await,
                _ => failed(e.to_string(), false),
            },
            Err(e) => failed(e.to_string(), false),
        }
    }

    fn fail(&self, report: &mut SyncReport, id: &str, reason: &str) {
        tracing::warn!(block = id, error = reason, "skipping block");
        self.metrics.block_load_failures.fetch_add(1, Relaxed);
        report.failed.push((id.to_string(), reason.to_string()));
    }

    /// Top-level names that are ULIDs, sorted.
    async fn list_blocks(&self) -> Result<Vec<Ulid>, StoreError> {
        let mut ids: Vec<Ulid> = self
            .bucket
            .list_dirs("")
            .await?
            .iter()
            .filter_map(|d| Ulid::from_string(d).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn deletion_mark(&self, id: Ulid) -> Result<Option<DeletionMark>, StoreError> {
        let path = format!("{id}/{}", DeletionMark::FILENAME);
        match self.bucket.get(&path).await {
            Ok(b) => Ok(Some(DeletionMark::parse(&b, Path::new(&path))?)),
            Err(BucketError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn load_block(
        &self,
        id: Ulid,
        meta: BlockMeta,
        meta_path: &str,
    ) -> Result<BucketBlock, StoreError> {
        if meta.ulid != id {
            return Err(StoreError::Block(crate::block::BlockError::InvalidMeta {
                path: meta_path.into(),
                reason: format!("ulid {} does not match directory {id}", meta.ulid),
            }));
        }
        let mut segments: Vec<(String, u64)> = self
            .bucket
            .list(&format!("{id}/chunks"))
            .await?
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect();
        segments.sort();
        for (i, (p, _)) in segments.iter().enumerate() {
            let want = format!("{id}/chunks/{:06}", i + 1);
            if *p != want {
                return Err(StoreError::Block(
                    crate::block::BlockError::SegmentNumbering {
                        dir: format!("{id}/chunks").into(),
                        expected: i as u64 + 1,
                        found: p.clone(),
                    },
                ));
            }
        }
        let header_path = self.data_dir.join(id.to_string()).join(HEADER_FILENAME);
        let (header, keys) =
            IndexHeader::open_or_build(&self.bucket, &id.to_string(), &header_path).await?;
        let filter = self
            .label_filter(
                &header_path.with_file_name(LABEL_FILTER_FILENAME),
                &header,
                &id.to_string(),
                keys,
            )
            .await;
        let mut block = BucketBlock::new(
            meta,
            header,
            segments.into_iter().map(|s| s.1).collect(),
            self.cores.cores(),
        )
        .with_label_filter(filter);
        if let Some(ext) = &self.opts.external_labels {
            block.ext_labels = ext.clone();
        }
        Ok(block)
    }
}
