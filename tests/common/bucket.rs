//! Buckets of blocks real promtool wrote, as a sidecar would have uploaded them.

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet_engine::block::{BlockMeta, ThanosMeta};
use ulid::Ulid;

use super::{copy_dir, gen_openmetrics, require, run_ok};

/// Promtool's 2 h blocks of `instances` × 200 series over `hours` from 2025-01-01 (aligned to
/// 8 h), one sample per 15 s, in `tmp/promtool-blocks`.
pub fn promtool_blocks(tmp: &Path, instances: u32, hours: u32) -> PathBuf {
    let om = gen_openmetrics(tmp, 1_735_689_600, hours * 3600, 15, instances);
    let dir = tmp.join("promtool-blocks");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&dir),
    );
    dir
}

/// Block directories under `dir`, by name.
pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    v.sort();
    v
}

/// Copies the blocks of `src` into the bucket under new ULIDs (replicas of one block get their
/// own, as two Prometheus servers' blocks do), each ending at its 2 h range end as Prometheus
/// and receivers end blocks (promtool ends them at their last sample), with the external
/// labels `labels` and no tombstones, as a sidecar uploads them. Returns the ULIDs in the
/// source order.
pub fn upload(src: &Path, bucket: &Path, labels: &[(&str, &str)]) -> Vec<Ulid> {
    let mut ids = Vec::new();
    for b in block_dirs(src) {
        let mut meta = BlockMeta::read(&b).unwrap();
        let id = Ulid::new();
        meta.ulid = id;
        meta.max_time = meta.min_time + 2 * 3_600_000;
        meta.compaction.sources = vec![id];
        meta.thanos = Some(ThanosMeta {
            version: 1,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            source: "sidecar".into(),
            ..ThanosMeta::default()
        });
        let dst = bucket.join(id.to_string());
        copy_dir(&b, &dst);
        let _ = std::fs::remove_file(dst.join("tombstones"));
        meta.write(&dst).unwrap();
        ids.push(id);
    }
    ids
}
