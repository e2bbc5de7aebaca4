//! Shipping cut blocks to the bucket, as Thanos's shipper does: every file of the block first,
//! `meta.json` last (so a reader never sees a block without its data), and the ULIDs uploaded
//! kept in `<tenant>/thanos.shipper.json`, so a restart uploads what was cut but not shipped.
//! Local blocks past `--tsdb.retention` are deleted once shipped.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use gauntlet_engine::bucket::Bucket;

use super::tenants::Tenant;

/// The file, in the TSDB directory, listing the blocks uploaded (Thanos's shipper's format).
pub const SHIPPER_FILE: &str = "thanos.shipper.json";

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

/// Records `uploaded` in `<dir>/thanos.shipper.json` (version 1, as Thanos writes it),
/// through a temporary file renamed into place.
pub fn write_shipper_file(dir: &Path, uploaded: &[String]) -> anyhow::Result<()> {
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
        match crate::blocks::upload_block(bucket, &dir, &id).await {
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
    fn shipper_file_round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_shipper_file(d.path()).is_empty());
        write_shipper_file(d.path(), &["A".into(), "B".into()]).unwrap();
        assert_eq!(read_shipper_file(d.path()), vec!["A", "B"]);
    }
}
