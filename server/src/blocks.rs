//! Moving whole blocks between a local directory and the bucket, as Thanos does: every file
//! streamed, `meta.json` uploaded last (a block without it is a partial upload and is not
//! read), markers and tombstones never downloaded as block data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gauntlet_engine::bucket::Bucket;

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
