//! [`Queryable`] over the blocks in a local directory.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Queryable, SelectHints, Series, merge_samples};
use crate::block::{Block, block_dirs};
use crate::chunk::SampleBatch;
use crate::error::Result;
use crate::index::ChunkMeta;
use crate::labels::{Label, Labels, Matcher};

/// The blocks of one directory, opened once. Series with the same labels in several blocks
/// are merged.
#[derive(Debug)]
pub struct LocalBlocks {
    blocks: Vec<Block>,
}

impl LocalBlocks {
    /// Opens every block under `dir` (or `dir` itself when it is a block).
    pub fn open(dir: &Path) -> Result<Self> {
        let blocks = block_dirs(dir)?
            .iter()
            .map(|d| Block::open(d))
            .collect::<Result<Vec<_>>>()?;
        Ok(LocalBlocks { blocks })
    }

    /// The open blocks, in directory-name order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Blocks whose `[min_time, max_time)` overlaps `[mint, maxt]`.
    fn overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &Block> {
        self.blocks
            .iter()
            .filter(move |b| b.meta().min_time <= maxt && b.meta().max_time > mint)
    }

    /// Label sets of the matching series that have a chunk in range, with the block index.
    fn matching_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        let mut out = Vec::new();
        let mut labels: Vec<Label> = Vec::new();
        let mut chunks: Vec<ChunkMeta> = Vec::new();
        for b in self.overlapping(mint, maxt) {
            for r in b.select(matchers)? {
                b.series(r, &mut labels, &mut chunks)?;
                if chunks
                    .iter()
                    .any(|c| c.max_time >= mint && c.min_time <= maxt)
                {
                    out.push(Labels::from_sorted(labels.clone()));
                }
            }
        }
        Ok(out)
    }
}

impl Queryable for LocalBlocks {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        let mut by_labels: BTreeMap<Labels, Vec<SampleBatch>> = BTreeMap::new();
        let mut labels: Vec<Label> = Vec::new();
        let mut chunks: Vec<ChunkMeta> = Vec::new();
        for b in self.overlapping(mint, maxt) {
            for r in b.select(matchers)? {
                b.series(r, &mut labels, &mut chunks)?;
                let mut batch = SampleBatch::new();
                b.read_samples(r, &chunks, mint, maxt, &mut batch)?;
                if !batch.is_empty() {
                    by_labels
                        .entry(Labels::from_sorted(labels.clone()))
                        .or_default()
                        .push(batch);
                }
            }
        }
        Ok(by_labels
            .into_iter()
            .map(|(labels, parts)| {
                let samples = if parts.len() == 1 {
                    parts.into_iter().next().unwrap_or_default()
                } else {
                    merge_samples(&parts.iter().collect::<Vec<_>>())
                };
                Series { labels, samples }
            })
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .matching_labels(matchers, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values: Vec<String> = self
            .matching_labels(matchers, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}
