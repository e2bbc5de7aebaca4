//! Whole blocks in the bucket, as Thanos handles them: reading every block's meta.json and
//! markers; moving blocks between a local directory and the bucket (every file streamed,
//! `meta.json` uploaded last: a block without it is a partial upload and is not read; markers
//! and tombstones never downloaded as block data); deleting them, and finding which are due
//! for deletion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use gauntlet_engine::block::{BlockMeta, DeletionMark};
use gauntlet_engine::bucket::{Bucket, BucketError};
use ulid::Ulid;

/// A partial upload (a block directory without meta.json) whose newest object and ULID are
/// both older than this is taken for abandoned and removed, ms (two days, as Thanos).
pub const PARTIAL_UPLOAD_ABANDONED_MS: i64 = 2 * 86_400_000;

/// A block in the bucket with its markers.
#[derive(Debug, Clone)]
pub struct SyncedBlock {
    /// Its meta.json.
    pub meta: BlockMeta,
    /// Its deletion mark, if it has one that parses.
    pub deletion: Option<DeletionMark>,
    /// Whether it has a no-compact mark.
    pub no_compact: bool,
    /// Whether it has a no-downsample mark.
    pub no_downsample: bool,
}

impl SyncedBlock {
    /// Its resolution, ms (0 for raw blocks).
    pub fn resolution(&self) -> i64 {
        self.meta.resolution()
    }

    /// Its external labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.meta
            .thanos
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default()
    }
}

/// What one listing of the bucket found.
#[derive(Debug, Clone, Default)]
pub struct BucketBlocks {
    /// Blocks whose meta.json parses and names them, by ULID.
    pub blocks: BTreeMap<Ulid, SyncedBlock>,
    /// Directories named as a ULID without meta.json: uploads under way or abandoned.
    pub partial: Vec<Ulid>,
    /// Directories whose meta.json does not parse or names another block, with why.
    pub unusable: Vec<(Ulid, String)>,
}

/// Reads the meta.json and markers of every block directory (a top-level directory named as a
/// ULID) of the bucket. A marker that does not parse counts as absent.
pub async fn sync_blocks(bucket: &Bucket) -> anyhow::Result<BucketBlocks> {
    let mut out = BucketBlocks::default();
    for dir in bucket.list_dirs("").await.context("listing the bucket")? {
        let Ok(id) = Ulid::from_string(&dir) else {
            continue;
        };
        let Some(meta) = read_object(bucket, &format!("{dir}/meta.json")).await? else {
            out.partial.push(id);
            continue;
        };
        let path = PathBuf::from(format!("{dir}/meta.json"));
        let meta = match BlockMeta::parse(&meta, &path) {
            Ok(meta) if meta.ulid == id => meta,
            Ok(meta) => {
                out.unusable
                    .push((id, format!("its meta.json names block {}", meta.ulid)));
                continue;
            }
            Err(e) => {
                out.unusable
                    .push((id, format!("its meta.json does not parse: {e}")));
                continue;
            }
        };
        let mark = format!("{dir}/{}", DeletionMark::FILENAME);
        let deletion = read_object(bucket, &mark)
            .await?
            .and_then(|b| DeletionMark::parse(&b, Path::new(&mark)).ok());
        let no_compact = read_object(bucket, &format!("{dir}/no-compact-mark.json"))
            .await?
            .is_some();
        let no_downsample = read_object(bucket, &format!("{dir}/no-downsample-mark.json"))
            .await?
            .is_some();
        out.blocks.insert(
            id,
            SyncedBlock {
                meta,
                deletion,
                no_compact,
                no_downsample,
            },
        );
    }
    Ok(out)
}

/// The object at `path`, or `None` when it does not exist.
pub async fn read_object(bucket: &Bucket, path: &str) -> anyhow::Result<Option<bytes::Bytes>> {
    match bucket.get(path).await {
        Ok(b) => Ok(Some(b)),
        Err(BucketError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}

/// Blocks whose deletion mark was written `delay` or longer before `now_ms`.
pub fn deletion_due(
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    delay: Duration,
    now_ms: i64,
) -> Vec<Ulid> {
    let now_s = now_ms / 1000;
    blocks
        .values()
        .filter(|b| {
            b.deletion
                .as_ref()
                .is_some_and(|m| now_s - m.deletion_time >= delay.as_secs() as i64)
        })
        .map(|b| b.meta.ulid)
        .collect()
}

/// Block directories, other than those of `blocks`, that hold no meta.json and whose newest
/// object and ULID are both older than [`PARTIAL_UPLOAD_ABANDONED_MS`] at `now_ms`: uploads
/// that will not finish. Listed afresh, so an upload that finished since `blocks` was read is
/// left alone.
pub async fn abandoned_uploads(
    bucket: &Bucket,
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    now_ms: i64,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for dir in bucket.list_dirs("").await.context("listing the bucket")? {
        let Ok(id) = Ulid::from_string(&dir) else {
            continue;
        };
        if blocks.contains_key(&id) {
            continue;
        }
        let objects = bucket
            .list(&format!("{dir}/"))
            .await
            .with_context(|| format!("listing {dir}/"))?;
        if objects.iter().any(|o| o.path.ends_with("/meta.json")) {
            continue;
        }
        let newest = objects.iter().map(|o| o.modified_ms).max().unwrap_or(0);
        if now_ms - newest < PARTIAL_UPLOAD_ABANDONED_MS
            || now_ms - (id.timestamp_ms() as i64) < PARTIAL_UPLOAD_ABANDONED_MS
        {
            continue;
        }
        out.push(dir);
    }
    Ok(out)
}

/// The files of the block in `dir`, relative to it, `meta.json` last.
pub fn block_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for e in std::fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
            let e = e?;
            let p = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if p != Path::new("meta.json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out.push(PathBuf::from("meta.json"));
    Ok(out)
}

/// Uploads the block in `dir` as `<id>/…`, meta.json last; returns the bytes uploaded.
pub async fn upload_block(bucket: &Bucket, dir: &Path, id: &str) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for rel in block_files(dir)? {
        let key = format!("{id}/{}", rel.to_string_lossy());
        total += bucket
            .upload_file(&dir.join(&rel), &key)
            .await
            .with_context(|| format!("uploading {key}"))?;
    }
    Ok(total)
}

/// Downloads block `id` (its `meta.json`, `index` and `chunks/`) into `dir`, which is
/// created; returns the bytes downloaded.
pub async fn download_block(bucket: &Bucket, id: &str, dir: &Path) -> anyhow::Result<u64> {
    let chunks = dir.join("chunks");
    tokio::fs::create_dir_all(&chunks)
        .await
        .with_context(|| format!("creating {}", chunks.display()))?;
    let mut total = 0u64;
    let mut objects = bucket
        .list(&format!("{id}/chunks/"))
        .await
        .with_context(|| format!("listing {id}/chunks/"))?;
    objects.sort_by(|a, b| a.path.cmp(&b.path));
    let mut keys: Vec<(String, PathBuf)> = objects
        .into_iter()
        .filter_map(|o| {
            let name = o.path.rsplit('/').next()?.to_string();
            Some((o.path.clone(), chunks.join(name)))
        })
        .collect();
    keys.push((format!("{id}/index"), dir.join("index")));
    keys.push((format!("{id}/meta.json"), dir.join("meta.json")));
    for (key, local) in keys {
        total += bucket
            .download_file(&key, &local)
            .await
            .with_context(|| format!("downloading {key}"))?;
    }
    Ok(total)
}

/// Deletes block `id` from the bucket as Thanos does: `meta.json` first (so no reader takes the
/// block for whole any more), then every other object, the deletion mark last.
pub async fn delete_block(bucket: &Bucket, id: &str) -> anyhow::Result<()> {
    bucket
        .delete(&format!("{id}/meta.json"))
        .await
        .with_context(|| format!("deleting {id}/meta.json"))?;
    let mark = format!("{id}/deletion-mark.json");
    let objects = bucket
        .list(&format!("{id}/"))
        .await
        .with_context(|| format!("listing {id}/"))?;
    for o in objects.iter().filter(|o| o.path != mark) {
        bucket
            .delete(&o.path)
            .await
            .with_context(|| format!("deleting {}", o.path))?;
    }
    bucket
        .delete(&mark)
        .await
        .with_context(|| format!("deleting {mark}"))?;
    // A filesystem bucket keeps the emptied directories; they would read as a partial upload.
    if let Some(root) = bucket.local_root() {
        let dir = root.join(id);
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Converts block `id` of `bucket` to Parquet shards in its directory: downloaded under
/// `scratch`, converted there (one row group in memory at a time), chunks files uploaded
/// first and shard 0's labels file last, so a reader sees the shards once they are all there.
/// With `delete_tsdb` the block's index and chunk segments are deleted afterwards.
pub async fn convert_to_parquet(
    bucket: &Bucket,
    id: Ulid,
    scratch: &Path,
    opts: &gauntlet_engine::parquet::write::ConvertOptions,
    delete_tsdb: bool,
) -> anyhow::Result<gauntlet_engine::parquet::write::ConvertReport> {
    use gauntlet_engine::parquet::{chunks_file, labels_file};
    let work = scratch.join(id.to_string());
    let src = work.join("src");
    download_block(bucket, &id.to_string(), &src).await?;
    let (out, o) = (work.join("out"), opts.clone());
    let report = tokio::task::spawn_blocking(move || {
        let block = gauntlet_engine::block::Block::open(&src)?;
        let r = gauntlet_engine::parquet::write::convert_block(&block, &out, &o)?;
        anyhow::Ok(r)
    })
    .await
    .context("convert task")?
    .with_context(|| format!("converting {id}"))?;
    let out = work.join("out");
    let mut order: Vec<String> = (0..report.shards).map(chunks_file).collect();
    order.extend((0..report.shards).rev().map(labels_file));
    for name in order {
        bucket
            .upload_file(&out.join(&name), &format!("{id}/{name}"))
            .await
            .with_context(|| format!("uploading {id}/{name}"))?;
    }
    if delete_tsdb {
        let mut gone: Vec<String> = bucket
            .list(&format!("{id}/chunks/"))
            .await
            .with_context(|| format!("listing {id}/chunks/"))?
            .into_iter()
            .map(|o| o.path)
            .collect();
        gone.push(format!("{id}/index"));
        for key in gone {
            bucket
                .delete(&key)
                .await
                .with_context(|| format!("deleting {key}"))?;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

/// Whether block `id` has Parquet shards already.
pub async fn has_parquet(bucket: &Bucket, id: Ulid) -> anyhow::Result<bool> {
    let key = format!("{id}/{}", gauntlet_engine::parquet::labels_file(0));
    bucket
        .exists(&key)
        .await
        .with_context(|| format!("looking for {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_is_uploaded_last() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("chunks")).unwrap();
        for f in ["meta.json", "index", "tombstones", "chunks/000001"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let files = block_files(d.path()).unwrap();
        assert_eq!(files.last().unwrap(), Path::new("meta.json"));
        assert_eq!(files.len(), 4);
    }
}
