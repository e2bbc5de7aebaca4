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
use crate::labels::{Labels, MatchType, Matcher};

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

/// An entry of `deletions_applied` as Thanos writes it: the matchers of one selector with
/// their Go field names and match type numbers.
fn deletion_request(selector: &[Matcher]) -> Value {
    let matchers: Vec<Value> = selector
        .iter()
        .map(|m| {
            let typ = match m.typ {
                MatchType::Equal => 0,
                MatchType::NotEqual => 1,
                MatchType::Regexp => 2,
                MatchType::NotRegexp => 3,
            };
            json!({"Type": typ, "Name": m.name, "Value": m.value})
        })
        .collect();
    json!({ "matchers": matchers })
}
