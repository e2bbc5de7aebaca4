//! Checks a block's files against one another and against its meta.json, for `gauntlet tools
//! bucket verify`: meta.json parses and names the block, the index opens and every series
//! decodes in label order, every chunk resolves with its checksum holding and its samples
//! inside the bounds the index gives, and the stats match what the block holds. Across blocks,
//! [`overlaps`] finds blocks of one group (same external labels and resolution) that overlap in
//! time.

use std::collections::BTreeMap;
use std::path::Path;

use ulid::Ulid;

use super::meta::BlockMeta;
use super::reader::Block;
use crate::chunk::{AggrChunk, AggrType, Encoding, SampleBatch, decode_xor_into};
use crate::compact::merge::chunk_samples;
use crate::index::ChunkMeta;
use crate::labels::{Label, Labels};

/// At most this many issues are listed for one block; the rest are counted. A block that is
/// damaged throughout would otherwise print one line per chunk.
pub const MAX_LISTED_ISSUES: usize = 50;

/// What [`verify_block`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Series in the index.
    pub series: u64,
    /// Chunks the index references.
    pub chunks: u64,
    /// Samples in the chunks that decoded.
    pub samples: u64,
    /// What is wrong, one sentence each; empty when the block is sound.
    pub issues: Vec<String>,
    /// Issues found past [`MAX_LISTED_ISSUES`].
    pub unlisted: usize,
}

impl Verified {
    fn issue(&mut self, what: String) {
        if self.issues.len() < MAX_LISTED_ISSUES {
            self.issues.push(what);
        } else {
            self.unlisted += 1;
        }
    }

    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Checks the block in `dir`, which should be block `id`. `progress` is called now and then
/// with the series checked so far and the series in the block.
pub fn verify_block(dir: &Path, id: Ulid, mut progress: impl FnMut(u64, u64)) -> Verified {
    let mut v = Verified::default();
    let meta = match BlockMeta::read(dir) {
        Ok(m) => m,
        Err(e) => {
            v.issue(format!("meta.json is unusable: {e}"));
            return v;
        }
    };
    if meta.ulid != id {
        v.issue(format!(
            "meta.json names block {}, not the block {id} it is stored as",
            meta.ulid
        ));
    }
    let block = match Block::open(dir) {
        Ok(b) => b,
        Err(e) => {
            v.issue(format!("the block does not open: {e}"));
            return v;
        }
    };
    let mut refs = Vec::new();
    if let Err(e) = block.index().all_postings(&mut refs) {
        v.issue(format!(
            "the index's list of all series does not decode: {e}"
        ));
        return v;
    }
    v.series = refs.len() as u64;
    let total = v.series;
    // Stats are compared only when every series and chunk could be counted.
    let mut counted = true;
    let mut chunk_damage = false;
    let mut prev: Vec<Label> = Vec::new();
    let mut labels: Vec<Label> = Vec::new();
    let mut metas: Vec<ChunkMeta> = Vec::new();
    let mut batch = SampleBatch::new();
    for (i, &r) in refs.iter().enumerate() {
        if i % 1024 == 0 {
            progress(i as u64, total);
        }
        if let Err(e) = block.series(r, &mut labels, &mut metas) {
            v.issue(format!("series {r} does not decode: {e}"));
            counted = false;
            continue;
        }
        if labels.is_empty() {
            v.issue(format!("series {r} has no labels"));
        } else if labels.windows(2).any(|w| w[0].name >= w[1].name) {
            v.issue(format!(
                "series {r} {}: label names are not sorted or repeat",
                show(&labels)
            ));
        }
        if i > 0 && labels <= prev {
            v.issue(format!(
                "series {r} {} does not sort after the series before it ({}): the index is out of order",
                show(&labels),
                show(&prev)
            ));
        }
        for (k, c) in metas.iter().enumerate() {
            v.chunks += 1;
            if c.min_time > c.max_time {
                v.issue(format!(
                    "series {}: chunk {:#x} starts at {} ms, after it ends at {} ms",
                    show(&labels),
                    c.chunk_ref,
                    c.min_time,
                    c.max_time
                ));
            }
            if k > 0 && c.min_time <= metas[k - 1].max_time {
                v.issue(format!(
                    "series {}: chunk {:#x} [{}, {}] ms overlaps or precedes the chunk before it [{}, {}] ms",
                    show(&labels),
                    c.chunk_ref,
                    c.min_time,
                    c.max_time,
                    metas[k - 1].min_time,
                    metas[k - 1].max_time
                ));
            }
            if c.min_time < meta.min_time || c.max_time > meta.max_time {
                v.issue(format!(
                    "series {}: chunk {:#x} [{}, {}] ms lies outside the block's range [{}, {}) ms",
                    show(&labels),
                    c.chunk_ref,
                    c.min_time,
                    c.max_time,
                    meta.min_time,
                    meta.max_time
                ));
            }
            let (enc, data) = match block.chunks().chunk(c.chunk_ref) {
                Ok(x) => x,
                Err(e) => {
                    v.issue(format!(
                        "series {}: chunk {:#x}: {e}",
                        show(&labels),
                        c.chunk_ref
                    ));
                    counted = false;
                    chunk_damage = true;
                    continue;
                }
            };
            match chunk_bounds(enc, data, &mut batch) {
                Ok((samples, bounds)) => {
                    v.samples += samples;
                    if let Some((first, last)) = bounds
                        && (first != c.min_time || last != c.max_time)
                    {
                        v.issue(format!(
                            "series {}: chunk {:#x} holds samples from {first} to {last} ms, but the index says {} to {} ms",
                            show(&labels),
                            c.chunk_ref, c.min_time, c.max_time
                        ));
                    }
                }
                Err(why) => {
                    v.issue(format!(
                        "series {}: chunk {:#x} does not decode: {why}",
                        show(&labels),
                        c.chunk_ref
                    ));
                    counted = false;
                    chunk_damage = true;
                }
            }
        }
        std::mem::swap(&mut prev, &mut labels);
    }
    progress(total, total);
    if !chunk_damage {
        // Damage in records no series references, or past the last one (a truncated file).
        if let Some(Err(e)) = block.chunks().iter().find(Result::is_err) {
            v.issue(format!("chunk segments: {e}"));
        }
    }
    if counted {
        let s = &meta.stats;
        for (what, stated, found) in [
            ("series", s.num_series, v.series),
            ("chunks", s.num_chunks, v.chunks),
            ("samples", s.num_samples, v.samples),
        ] {
            if stated != found {
                v.issue(format!(
                    "meta.json says the block has {stated} {what}, it holds {found}"
                ));
            }
        }
    }
    v
}

/// A series' labels as an error message shows them.
fn show(labels: &[Label]) -> Labels {
    Labels::from_pairs(labels.iter().map(|l| (l.name.clone(), l.value.clone())))
}

/// The samples of a chunk and, for the encodings whose timestamps can be read here (float
/// chunks and the count of a downsampled one), its first and last timestamp. Timestamps must
/// rise.
fn chunk_bounds(
    enc: u8,
    data: &[u8],
    batch: &mut SampleBatch,
) -> Result<(u64, Option<(i64, i64)>), String> {
    let xor = if enc == Encoding::Xor as u8 {
        data
    } else if enc == Encoding::Aggr as u8 {
        AggrChunk::new(data)
            .get_xor(AggrType::Count)
            .map_err(|e| e.to_string())?
    } else {
        return Ok((chunk_samples(enc, data)?, None));
    };
    batch.clear();
    decode_xor_into(xor, batch).map_err(|e| e.to_string())?;
    if let Some(w) = batch.ts.windows(2).find(|w| w[1] <= w[0]) {
        return Err(format!(
            "timestamp {} ms follows {} ms: samples are out of order",
            w[1], w[0]
        ));
    }
    let bounds = batch.ts.first().zip(batch.ts.last()).map(|(a, b)| (*a, *b));
    Ok((batch.ts.len() as u64, bounds))
}

/// Two blocks of one group whose time ranges overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The block that starts first (the lower ULID when both start together).
    pub first: Ulid,
    /// The other block.
    pub second: Ulid,
    /// Start of the shared range, ms.
    pub min_time: i64,
    /// End of the shared range, ms (exclusive).
    pub max_time: i64,
}

/// Every pair of blocks with the same external labels and resolution whose `[min, max)` time
/// ranges overlap, group by group, in time order.
pub fn overlaps<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>) -> Vec<Overlap> {
    let mut groups: BTreeMap<(BTreeMap<String, String>, i64), Vec<&BlockMeta>> = BTreeMap::new();
    for m in metas {
        let (labels, res) = m.thanos.as_ref().map_or((BTreeMap::new(), 0), |t| {
            (t.labels.clone(), t.downsample.resolution)
        });
        groups.entry((labels, res)).or_default().push(m);
    }
    let mut out = Vec::new();
    for blocks in groups.values_mut() {
        blocks.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
        for (i, a) in blocks.iter().enumerate() {
            for b in &blocks[i + 1..] {
                if b.min_time >= a.max_time {
                    break;
                }
                out.push(Overlap {
                    first: a.ulid,
                    second: b.ulid,
                    min_time: b.min_time,
                    max_time: a.max_time.min(b.max_time),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::ThanosMeta;

    fn meta(n: u8, min: i64, max: i64, cluster: &str) -> BlockMeta {
        let mut m = BlockMeta::new(Ulid::from_parts(0, u128::from(n)), min, max);
        m.thanos = Some(ThanosMeta {
            labels: [("cluster".to_string(), cluster.to_string())].into(),
            ..ThanosMeta::default()
        });
        m
    }

    #[test]
    fn overlaps_are_found_within_a_group_only() {
        let blocks = [
            meta(1, 0, 100, "a"),
            meta(2, 100, 200, "a"),
            meta(3, 50, 150, "a"),
            meta(4, 0, 100, "b"),
        ];
        let found = overlaps(&blocks);
        let pairs: Vec<(u128, u128, i64, i64)> = found
            .iter()
            .map(|o| (o.first.random(), o.second.random(), o.min_time, o.max_time))
            .collect();
        assert_eq!(pairs, vec![(1, 3, 50, 100), (3, 2, 100, 150)]);
    }

    #[test]
    fn a_directory_without_a_block_is_one_issue() {
        let dir = tempfile::tempdir().unwrap();
        let v = verify_block(dir.path(), Ulid::nil(), |_, _| {});
        assert_eq!(v.issues.len(), 1, "{v:?}");
        assert!(v.issues[0].starts_with("meta.json is unusable: "), "{v:?}");
    }
}
