//! Shipping cut blocks to the bucket, as Thanos's shipper does: every file of the block first,
//! `meta.json` last (so a reader never sees a block without its data), and the ULIDs uploaded
//! kept in `<tenant>/thanos.shipper.json`, so a restart uploads what was cut but not shipped.
//! Local blocks past `--tsdb.retention` are deleted once shipped.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use gauntlet_engine::bucket::Bucket;

use super::tenants::Tenant;

const SHIPPER_FILE: &str = "thanos.shipper.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct ShipperFile {
    version: u32,
    #[serde(default)]
    uploaded: Vec<String>,
}

/// The ULIDs a previous run uploaded (none when the file is missing or unreadable).
pub fn read_shipper_file(dir: &Path) -> Vec<String> {
    std::fs::read(dir.join(SHIPPER_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<ShipperFile>(&b).ok())
        .map(|f| f.uploaded)
        .unwrap_or_default()
}

fn write_shipper_file(dir: &Path, uploaded: &[String]) -> anyhow::Result<()> {
    let body = serde_json::to_vec_pretty(&ShipperFile {
        version: 1,
        uploaded: uploaded.to_vec(),
    })?;
    let tmp = dir.join(format!("{SHIPPER_FILE}.tmp"));
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(SHIPPER_FILE))
        .with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

/// Files of a block directory, relative paths, `meta.json` last.
fn block_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
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

/// Counters of the shipper, all tenants.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Blocks uploaded.
    pub uploads: std::sync::atomic::AtomicU64,
    /// Block uploads that failed (retried on the next pass).
    pub failures: std::sync::atomic::AtomicU64,
}

/// Uploads the tenant's local blocks that are not shipped yet. Failures are logged and
/// counted; the block is tried again on the next pass.
pub async fn ship(tenant: &Tenant, bucket: &Bucket, stats: &ShipStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let metas = tenant.block_metas();
    for m in metas {
        let id = m.ulid.to_string();
        let done = tenant
            .shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id);
        if done {
            continue;
        }
        let dir = tenant.dir().join(&id);
        match upload_block(bucket, &dir, &id).await {
            Ok(bytes) => {
                let list = {
                    let mut s = tenant.shipped.lock().unwrap_or_else(|p| p.into_inner());
                    s.push(id.clone());
                    s.clone()
                };
                if let Err(e) = write_shipper_file(tenant.dir(), &list) {
                    tracing::warn!(tenant = %tenant.name, error = %e, "could not record the upload; the block may be uploaded again");
                }
                stats.uploads.fetch_add(1, Relaxed);
                tracing::info!(tenant = %tenant.name, block = %id, bytes, "block uploaded");
            }
            Err(e) => {
                stats.failures.fetch_add(1, Relaxed);
                tracing::warn!(tenant = %tenant.name, block = %id, error = %format!("{e:#}"), "block upload failed; retrying on the next pass");
            }
        }
    }
}

async fn upload_block(bucket: &Bucket, dir: &Path, id: &str) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for rel in block_files(dir)? {
        let data = tokio::fs::read(dir.join(&rel))
            .await
            .with_context(|| format!("reading {}", dir.join(&rel).display()))?;
        total += data.len() as u64;
        let key = format!("{id}/{}", rel.to_string_lossy());
        bucket
            .put(&key, bytes::Bytes::from(data))
            .await
            .with_context(|| format!("uploading {key}"))?;
    }
    Ok(total)
}

/// Deletes the tenant's local blocks that ended more than `retention_ms` ago and, with a
/// bucket, were shipped. Returns how many were deleted.
pub fn apply_retention(tenant: &Tenant, retention_ms: i64, shipping: bool) -> usize {
    if retention_ms <= 0 {
        return 0;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let shipped = tenant
        .shipped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut deleted = 0;
    for m in tenant.block_metas() {
        let id = m.ulid.to_string();
        if m.max_time >= now - retention_ms || (shipping && !shipped.contains(&id)) {
            continue;
        }
        let dir = tenant.dir().join(&id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                deleted += 1;
                tracing::info!(tenant = %tenant.name, block = %id, "block past retention deleted");
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.name, block = %id, error = %e, "deleting a block past retention failed")
            }
        }
    }
    deleted
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

    #[test]
    fn shipper_file_round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_shipper_file(d.path()).is_empty());
        write_shipper_file(d.path(), &["A".into(), "B".into()]).unwrap();
        assert_eq!(read_shipper_file(d.path()), vec!["A", "B"]);
    }
}
