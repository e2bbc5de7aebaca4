//! Which blocks a Series request reads: blocks overlapping the time range, at the coarsest
//! resolution the request allows with finer blocks filling the gaps (per group of blocks
//! sharing external labels, as Thanos's store gateway does), minus the blocks whose label
//! filter proves no series can match. Also the served form of downsampled chunks: only the
//! aggregates the request asked for.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::BucketStore;
use super::block::{BucketBlock, RawChunk};
use super::series::SeriesQuery;
use crate::block::LabelFilter;
use crate::block::label_filter::pair_key;
use crate::chunk::{AggrError, AggrType, Encoding, retain_aggregates};
use crate::downsample::{BlockSpan, blocks_for_range};
use crate::labels::Matcher;

impl BucketStore {
    /// The blocks `q` reads, sorted by min time then ULID: per group of blocks sharing
    /// external labels, the resolution Thanos would choose for `q.max_resolution_window` (every
    /// resolution with `q.every_resolution`), without the blocks whose label filter rules out
    /// every series `q` could match. No postings are read here; blocks ruled out by external
    /// labels are skipped per block later.
    pub fn select_blocks(&self, q: &SeriesQuery) -> Vec<Arc<BucketBlock>> {
        // A request cut to nothing by the store's time window reads no block.
        if q.min_time > q.max_time {
            return Vec::new();
        }
        let in_range =
            |b: &BucketBlock| b.meta.min_time <= q.max_time && b.meta.max_time > q.min_time;
        let all = self.blocks();
        let mut chosen: Vec<Arc<BucketBlock>> = if q.every_resolution {
            all.into_iter().filter(|b| in_range(b)).collect()
        } else {
            let mut groups: Vec<Vec<Arc<BucketBlock>>> = Vec::new();
            for b in all {
                match groups.iter_mut().find(|g| g[0].ext_labels == b.ext_labels) {
                    Some(g) => g.push(b),
                    None => groups.push(vec![b]),
                }
            }
            let mut out = Vec::new();
            for g in groups {
                let spans: Vec<BlockSpan> = g
                    .iter()
                    .map(|b| BlockSpan {
                        min_time: b.meta.min_time,
                        max_time: b.meta.max_time,
                        resolution: b.resolution(),
                    })
                    .collect();
                let picked =
                    blocks_for_range(&spans, q.min_time, q.max_time, q.max_resolution_window);
                out.extend(picked.into_iter().map(|i| g[i].clone()));
            }
            // Within a group the choice is already in time order; this interleaves the groups
            // as the stream expects (older blocks first among equal series).
            out.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
            out
        };
        let before = chosen.len();
        chosen.retain(|b| may_hold_matches(b, &q.matchers));
        let excluded = (before - chosen.len()) as u64;
        if excluded > 0 {
            self.metrics
                .label_filter_excluded
                .fetch_add(excluded, Relaxed);
        }
        chosen
    }
}

/// Whether the block's label filter allows a series matching `matchers` (always true without
/// a filter). Matchers on the block's external labels are decided elsewhere and left out.
fn may_hold_matches(b: &BucketBlock, matchers: &[Matcher]) -> bool {
    let Some(f) = b.label_filter() else {
        return true;
    };
    f.may_match(
        matchers
            .iter()
            .filter(|m| b.ext_labels.get(&m.name).is_none()),
    )
}

/// A chunk as served for a request asking `aggregates`: raw chunks unchanged, an aggregate
/// chunk reduced to the requested aggregates (an absent one is an error, as in Thanos).
pub(super) fn served_chunk(c: RawChunk, aggregates: &[AggrType]) -> Result<RawChunk, AggrError> {
    if c.encoding != Encoding::Aggr as u8 {
        return Ok(c);
    }
    let data = retain_aggregates(&c.data, aggregates)?;
    Ok(RawChunk {
        data: data.into(),
        ..c
    })
}

impl BucketStore {
    /// The label filter of a block being loaded: read from `path` beside the index-header, or
    /// built (and written there) when missing, damaged or stale: from `keys` when the header
    /// was just built and hashed the pairs on its way, else from the index's postings offset
    /// table. A block whose filter cannot be built is served without one.
    pub(super) async fn label_filter(
        &self,
        path: &std::path::Path,
        header: &super::header::IndexHeader,
        block: &str,
        keys: Option<Vec<u64>>,
    ) -> Option<LabelFilter> {
        if let Some(f) = LabelFilter::open_valid(path, header.index_size()) {
            return Some(f);
        }
        let keys = match keys {
            Some(k) => Ok(k),
            None => {
                let mut keys = Vec::new();
                header
                    .for_each_pair(&self.bucket, &format!("{block}/index"), |n, v| {
                        if !n.is_empty() {
                            keys.push(pair_key(n, &String::from_utf8_lossy(v)));
                        }
                    })
                    .await
                    .map(|()| keys)
                    .map_err(|e| e.to_string())
            }
        };
        let built = keys
            .and_then(|k| LabelFilter::from_keys(k, header.index_size()).map_err(|e| e.to_string()))
            .and_then(|f| f.write(path).map(|()| f).map_err(|e| e.to_string()));
        match built {
            Ok(f) => {
                self.metrics.label_filter_builds.fetch_add(1, Relaxed);
                Some(f)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "block served without a label filter");
                None
            }
        }
    }
}
