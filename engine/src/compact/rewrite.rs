//! Rewriting a block without some of its series, as Thanos's `tools bucket rewrite` does for
//! deletions: the new block is written by the merge with the block as its only input and the
//! matching series left out, so the other series' chunks are copied as they are. Its meta.json
//! keeps the source's time range, external labels, resolution and compaction history, names
//! `bucket.rewrite` as its source and records the deletion in `thanos.rewrites`.

use std::path::Path;

use serde_json::{Value, json};
use ulid::Ulid;

use super::merge::{MergeOptions, MergeStats, chunk_samples, merge_blocks, selected_refs};
use crate::block::{Block, BlockMeta, Rewrite};
use crate::error::{Error, Result};
use crate::index::ChunkMeta;
use crate::labels::{Labels, Matcher};

/// `thanos.source` of a block written by a rewrite.
pub const REWRITE_SOURCE: &str = "bucket.rewrite";

/// A series a deletion selects, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its chunks.
    pub chunks: u64,
    /// Its samples, as the block's stats count them.
    pub samples: u64,
}

/// Calls `f` with every series of `block` that any of `selectors` selects, in label order;
/// each selector is a list of matchers that must all match. Reads each chunk's sample count.
pub fn for_each_selected(
    block: &Block,
    selectors: &[Vec<Matcher>],
    mut f: impl FnMut(SelectedSeries),
) -> Result<()> {
    let mut labels = Vec::new();
    let mut metas: Vec<ChunkMeta> = Vec::new();
    for r in selected_refs(block.index(), selectors)? {
        block.series(r, &mut labels, &mut metas)?;
        let mut samples = 0;
        for c in &metas {
            let (enc, data) = block.chunks().chunk(c.chunk_ref)?;
            samples += chunk_samples(enc, data).map_err(|reason| {
                Error::InvalidInput(format!(
                    "{}: chunk {:#x} of series {r}: {reason}",
                    block.dir().display(),
                    c.chunk_ref
                ))
            })?;
        }
        f(SelectedSeries {
            labels: Labels::from_sorted(labels.clone()),
            chunks: metas.len() as u64,
            samples,
        });
    }
    Ok(())
}

/// Writes the block in `src` without the series any of `selectors` selects into a new block
/// under `out_parent` (named `ulid`, or a fresh ULID). Returns its meta and what the merge did;
/// no block is written (`None`) when every series was selected.
pub fn delete_series(
    src: &Path,
    out_parent: &Path,
    selectors: &[Vec<Matcher>],
    ulid: Option<Ulid>,
) -> Result<(Option<BlockMeta>, MergeStats)> {
    let source = BlockMeta::read(src)?;
    let mut thanos = source.thanos.clone().unwrap_or_default();
    thanos.version = 1;
    thanos.source = REWRITE_SOURCE.to_string();
    thanos.rewrites.push(Rewrite {
        sources: source.compaction.sources.clone(),
        deletions_applied: selectors.iter().map(|s| deletion_request(s)).collect(),
        relabels_applied: Vec::new(),
    });
    let opts = MergeOptions {
        ulid,
        thanos: Some(thanos),
        delete_series: selectors.to_vec(),
        ..MergeOptions::default()
    };
    let (meta, stats) = merge_blocks(&[src.to_path_buf()], out_parent, &opts)?;
    let Some(mut meta) = meta else {
        return Ok((None, stats));
    };
    // The merge counts a level and names the source as parent; a rewrite is no compaction.
    meta.compaction = source.compaction.clone();
    meta.write(&out_parent.join(meta.ulid.to_string()))?;
    Ok((Some(meta), stats))
}

/// An entry of `deletions_applied` as Thanos writes it: `{"matchers": [...]}`, each matcher of
/// the selector as Prometheus prints it (`__name__="up"`).
fn deletion_request(selector: &[Matcher]) -> Value {
    let matchers: Vec<String> = selector.iter().map(Matcher::to_string).collect();
    json!({ "matchers": matchers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockWriter, CutOptions, ThanosMeta};
    use crate::labels::MatchType;

    /// A block of series `m{s="<name>"}` with 240 samples each under `parent`, with a Thanos
    /// section; returns its directory.
    fn block(parent: &Path, names: &[&str]) -> std::path::PathBuf {
        let mut w = BlockWriter::create(parent, CutOptions::default()).unwrap();
        let ts: Vec<i64> = (0..240).map(|i| i * 15_000).collect();
        let val: Vec<f64> = (0..240).map(f64::from).collect();
        for name in names {
            w.add_series(
                &Labels::from_pairs([("__name__", "m"), ("s", *name)]),
                &ts,
                &val,
            )
            .unwrap();
        }
        let thanos = ThanosMeta {
            version: 1,
            labels: [("cluster".to_string(), "eu1".to_string())].into(),
            source: "sidecar".into(),
            ..ThanosMeta::default()
        };
        let meta = w.finish(Some(thanos)).unwrap().unwrap();
        parent.join(meta.ulid.to_string())
    }

    fn names(dir: &Path) -> Vec<String> {
        let b = Block::open(dir).unwrap();
        let mut seen = Vec::new();
        for_each_selected(&b, &[vec![Matcher::equal("__name__", "m")]], |s| {
            seen.push(s.labels.get("s").unwrap().to_string());
        })
        .unwrap();
        seen
    }

    #[test]
    fn selected_series_are_gone_and_the_rest_kept_with_the_source_history() {
        let dir = tempfile::tempdir().unwrap();
        let src = block(&dir.path().join("src"), &["a", "b", "c", "d"]);
        let sel = vec![vec![Matcher::new(MatchType::Regexp, "s", "a|c").unwrap()]];
        let b = Block::open(&src).unwrap();
        let mut selected = Vec::new();
        for_each_selected(&b, &sel, |s| selected.push(s)).unwrap();
        assert_eq!(selected.len(), 2);
        assert_eq!(selected[0].labels.get("s"), Some("a"));
        assert_eq!((selected[0].samples, selected[0].chunks), (240, 2));

        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (meta, stats) = delete_series(&src, &out, &sel, None).unwrap();
        let meta = meta.unwrap();
        assert_eq!(stats.series_deleted, 2);
        assert_eq!(names(&out.join(meta.ulid.to_string())), ["b", "d"]);
        let old = b.meta();
        assert_eq!(meta.compaction, old.compaction);
        assert_eq!((meta.min_time, meta.max_time), (old.min_time, old.max_time));
        assert_eq!(meta.stats.num_samples, 480);
        let t = meta.thanos.unwrap();
        assert_eq!(t.source, REWRITE_SOURCE);
        assert_eq!(t.labels, old.thanos.as_ref().unwrap().labels);
        assert_eq!(t.rewrites[0].sources, vec![old.ulid]);
        assert_eq!(
            t.rewrites[0].deletions_applied,
            vec![json!({"matchers": ["s=~\"a|c\""]})]
        );
        // What is on disk is what was returned.
        assert_eq!(
            BlockMeta::read(&out.join(meta.ulid.to_string()))
                .unwrap()
                .compaction,
            old.compaction
        );
    }

    #[test]
    fn deleting_every_series_writes_no_block() {
        let dir = tempfile::tempdir().unwrap();
        let src = block(&dir.path().join("src"), &["a", "b"]);
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let sel = vec![vec![Matcher::equal("__name__", "m")]];
        let (meta, stats) = delete_series(&src, &out, &sel, None).unwrap();
        assert!(meta.is_none());
        assert_eq!(stats.series_deleted, 2);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }
}
