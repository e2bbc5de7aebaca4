//! The sidecar's shipper: Prometheus's new blocks uploaded to the bucket as Thanos's sidecar
//! uploads them. Each block's files are hard-linked into `<tsdb.path>/thanos/upload/<ulid>`
//! beside a `meta.json` with Thanos's section (external labels, `source: sidecar`, raw
//! resolution, the file list), then uploaded data first and `meta.json` last. The blocks
//! uploaded are kept in `thanos.shipper.json` in Thanos's format
//! ([`crate::receive::ship`]), so Thanos's sidecar and this one can replace each other
//! without a block uploaded twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};

use anyhow::Context as _;
use gauntlet_engine::block::{BlockMeta, ThanosDownsample, ThanosFile, ThanosMeta};
use gauntlet_engine::bucket::Bucket;
use gauntlet_engine::labels::Labels;

use crate::receive::ship::{read_shipper_file, write_shipper_file};

/// Counters of the shipper, for `/metrics`.
#[derive(Debug, Default)]
pub struct ShipperStats {
    /// Blocks uploaded.
    pub uploads: AtomicU64,
    /// Block uploads that failed (tried again on the next pass).
    pub upload_failures: AtomicU64,
    /// Passes over the TSDB directory that ran to the end.
    pub dir_syncs: AtomicU64,
    /// Passes that stopped on an error.
    pub dir_sync_failures: AtomicU64,
    /// When the last block was uploaded, ms since the epoch (0: none yet).
    pub last_upload_ms: AtomicI64,
    /// The ULID of the block last uploaded (empty: none yet), for the status page.
    pub last_upload_block: std::sync::Mutex<String>,
}

/// What one pass decided for a block.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Uploaded before (by this sidecar, Thanos's, or found in the bucket).
    Shipped,
    /// Not for upload: empty, or compacted while compacted blocks are not shipped.
    Skip,
    /// To upload.
    Upload,
}

/// Whether a block is for upload, by what the shipper file says and its meta.
fn decide(meta: &BlockMeta, shipped: bool, upload_compacted: bool) -> Decision {
    if shipped {
        Decision::Shipped
    } else if meta.stats.num_samples == 0 || (meta.compaction.level > 1 && !upload_compacted) {
        Decision::Skip
    } else {
        Decision::Upload
    }
}

/// The shipper over one TSDB directory and one bucket.
#[derive(Debug)]
pub struct Shipper {
    /// Prometheus's TSDB directory.
    pub dir: PathBuf,
    /// Where blocks go.
    pub bucket: Bucket,
    /// Whether compacted blocks (level > 1) are uploaded too.
    pub upload_compacted: bool,
    /// Its counters.
    pub stats: ShipperStats,
}

impl Shipper {
    /// One pass, oldest block first: every block not shipped and due is uploaded, and the
    /// shipper file rewritten to list the shipped blocks still on disk. Stops at the first
    /// failed upload, as Thanos's shipper does, so blocks reach the bucket in time order.
    /// Returns how many were uploaded.
    pub async fn sync(&self, external: &Labels) -> anyhow::Result<usize> {
        let res = self.pass(external).await;
        match &res {
            Ok(_) => self.stats.dir_syncs.fetch_add(1, Relaxed),
            Err(_) => self.stats.dir_sync_failures.fetch_add(1, Relaxed),
        };
        res
    }

    async fn pass(&self, external: &Labels) -> anyhow::Result<usize> {
        let before = read_shipper_file(&self.dir);
        let mut metas: Vec<BlockMeta> = Vec::new();
        for name in super::store::block_names(&self.dir) {
            match BlockMeta::read(&self.dir.join(&name)) {
                Ok(m) => metas.push(m),
                Err(e) => {
                    tracing::warn!(block = %name, error = %e, "block meta unreadable; not shipped")
                }
            }
        }
        metas.sort_by_key(|m| (m.min_time, m.ulid));
        let mut shipped: Vec<String> = Vec::new();
        let mut uploaded = 0;
        let mut failed: Option<anyhow::Error> = None;
        for m in &metas {
            let id = m.ulid.to_string();
            match decide(m, before.contains(&id), self.upload_compacted) {
                Decision::Shipped => shipped.push(id),
                Decision::Skip => {}
                Decision::Upload if failed.is_some() => {}
                Decision::Upload => {
                    let meta_key = format!("{id}/meta.json");
                    let there = self
                        .bucket
                        .exists(&meta_key)
                        .await
                        .with_context(|| format!("checking {meta_key} in the bucket"))?;
                    if there {
                        tracing::info!(block = %id, "block already in the bucket; recorded as shipped");
                        shipped.push(id);
                        continue;
                    }
                    match self.upload(m, external).await {
                        Ok(bytes) => {
                            tracing::info!(block = %id, bytes, level = m.compaction.level, "block uploaded");
                            self.stats.uploads.fetch_add(1, Relaxed);
                            self.stats.last_upload_ms.store(crate::now_ms(), Relaxed);
                            *self
                                .stats
                                .last_upload_block
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = id.to_string();
                            shipped.push(id);
                            uploaded += 1;
                        }
                        Err(e) => {
                            self.stats.upload_failures.fetch_add(1, Relaxed);
                            failed = Some(e.context(format!("uploading block {id}")));
                        }
                    }
                }
            }
        }
        if let Err(e) = write_shipper_file(&self.dir, &shipped) {
            tracing::warn!(error = %format!("{e:#}"), "could not record the uploads; a block may be checked against the bucket again");
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(uploaded),
        }
    }

    /// Uploads block `m` through a staging directory of hard links with Thanos's meta;
    /// returns the bytes uploaded.
    async fn upload(&self, m: &BlockMeta, external: &Labels) -> anyhow::Result<u64> {
        let id = m.ulid.to_string();
        let staging = self.dir.join("thanos").join("upload").join(&id);
        let res = async {
            stage(&self.dir.join(&id), &staging, m, external)?;
            crate::blocks::upload_block(&self.bucket, &staging, &id).await
        }
        .await;
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(dir = %staging.display(), error = %e, "could not remove the staging directory");
        }
        res
    }
}

/// Fills `staging` with hard links to the block's `chunks/` and `index` in `block` and a
/// `meta.json` holding Thanos's section.
fn stage(block: &Path, staging: &Path, m: &BlockMeta, external: &Labels) -> anyhow::Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("clearing {}", staging.display()))?;
    }
    let chunks = staging.join("chunks");
    std::fs::create_dir_all(&chunks).with_context(|| format!("creating {}", chunks.display()))?;
    let link = |rel: &str| -> anyhow::Result<u64> {
        let (from, to) = (block.join(rel), staging.join(rel));
        std::fs::hard_link(&from, &to)
            .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            .with_context(|| format!("linking {} into {}", from.display(), to.display()))?;
        Ok(std::fs::metadata(&to)?.len())
    };
    let mut segments: Vec<String> = std::fs::read_dir(block.join("chunks"))
        .with_context(|| format!("listing {}", block.join("chunks").display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    segments.sort();
    let mut files = Vec::new();
    for s in &segments {
        let rel = format!("chunks/{s}");
        let size = link(&rel)?;
        files.push(ThanosFile::new(rel, Some(size)));
    }
    let index_size = link("index")?;
    files.push(ThanosFile::new("index".into(), Some(index_size)));
    files.push(ThanosFile::new("meta.json".into(), None));
    let mut meta = m.clone();
    meta.thanos = Some(ThanosMeta {
        labels: external
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect(),
        downsample: ThanosDownsample { resolution: 0 },
        source: "sidecar".into(),
        segment_files: segments,
        files,
        ..ThanosMeta::default()
    });
    meta.write(staging)
        .with_context(|| format!("writing {}/meta.json", staging.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_one_blocks_with_samples_are_shipped_once() {
        let mut m = BlockMeta::new(ulid::Ulid::new(), 0, 1000);
        m.stats.num_samples = 10;
        assert_eq!(decide(&m, false, false), Decision::Upload);
        assert_eq!(decide(&m, true, false), Decision::Shipped);
        m.compaction.level = 2;
        assert_eq!(decide(&m, false, false), Decision::Skip);
        assert_eq!(decide(&m, false, true), Decision::Upload);
        m.stats.num_samples = 0;
        assert_eq!(decide(&m, false, true), Decision::Skip);
    }
}
