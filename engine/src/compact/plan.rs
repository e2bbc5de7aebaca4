//! What to compact next in one group, as Thanos's planner decides it: overlapping blocks first
//! (vertical compaction), then level by level (2h → 8h → 2d → 14d) the first aligned window
//! holding two or more blocks that either spans the whole range or ends before the newest
//! block starts, then a large block with many tombstones on its own.

use std::collections::BTreeMap;

use ulid::Ulid;

use crate::block::BlockMeta;

/// Thanos's compaction ranges in ms: 1h (unused: blocks arrive as 2h), 2h, 8h, 2d, 14d.
pub const THANOS_RANGES_MS: [i64; 5] =
    [3_600_000, 7_200_000, 28_800_000, 172_800_000, 1_209_600_000];

/// A block as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanBlock {
    /// The block's ULID.
    pub ulid: Ulid,
    /// `[min_time, max_time)`, ms.
    pub min_time: i64,
    /// End of the block's range, ms (exclusive).
    pub max_time: i64,
    /// A compaction of this block failed before (`compaction.failed`).
    pub failed: bool,
    /// Marked `no-compact-mark.json`.
    pub no_compact: bool,
    /// Series count, for the tombstone rule.
    pub num_series: u64,
    /// Deleted intervals, for the tombstone rule.
    pub num_tombstones: u64,
}

impl PlanBlock {
    /// The planner's view of a meta.json; `no_compact` from the block's marker.
    pub fn from_meta(meta: &BlockMeta, no_compact: bool) -> Self {
        PlanBlock {
            ulid: meta.ulid,
            min_time: meta.min_time,
            max_time: meta.max_time,
            failed: meta.compaction.failed,
            no_compact,
            num_series: meta.stats.num_series,
            num_tombstones: meta.stats.num_tombstones,
        }
    }
}

/// The planner's answer for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Nothing to do.
    Nothing,
    /// Blocks that overlap in time: compact them together (vertical compaction).
    Overlapping(Vec<Ulid>),
    /// Blocks of one aligned window: compact them into the next level.
    Level(Vec<Ulid>),
    /// One large block with many deletions: rewrite it alone.
    Tombstones(Ulid),
}

impl Planned {
    /// The blocks to compact, in min-time order.
    pub fn blocks(&self) -> Vec<Ulid> {
        match self {
            Planned::Nothing => Vec::new(),
            Planned::Overlapping(v) | Planned::Level(v) => v.clone(),
            Planned::Tombstones(u) => vec![*u],
        }
    }
}

/// Plans the next compaction of one group's blocks (any order) over `ranges` (ms, smallest
/// first; Thanos's are [`THANOS_RANGES_MS`], the first of which is not used as a window).
pub fn plan(blocks: &[PlanBlock], ranges: &[i64]) -> Planned {
    let mut by_min: Vec<&PlanBlock> = blocks.iter().collect();
    by_min.sort_by_key(|b| (b.min_time, b.max_time, b.ulid));
    if by_min.is_empty() {
        return Planned::Nothing;
    }
    let compactable: Vec<&PlanBlock> = by_min.iter().copied().filter(|b| !b.no_compact).collect();
    let overlapping = select_overlapping(&compactable);
    if !overlapping.is_empty() {
        return Planned::Overlapping(overlapping);
    }
    // The newest block (largest min time) stays out, leaving a block's range for it to be
    // fixed or replaced before it is compacted.
    let newest = by_min[by_min.len() - 1];
    let mut rest = compactable.clone();
    if !newest.no_compact {
        rest.pop();
    }
    let older = &by_min[..by_min.len() - 1];
    let level = select_level(ranges, older);
    if !level.is_empty() {
        return Planned::Level(level);
    }
    let half = ranges.get(ranges.len() / 2).copied().unwrap_or(i64::MAX);
    for b in rest.iter().rev() {
        if b.max_time - b.min_time < half {
            break;
        }
        if b.num_tombstones as f64 / (b.num_series as f64 + 1.0) > 0.05 {
            return Planned::Tombstones(b.ulid);
        }
    }
    Planned::Nothing
}

/// Up to `max` plans that can run at once, in the order a planner run one merge at a time
/// would make them: the first is [`plan`]'s; each next one is what [`plan`] picks once the
/// merges before it are done, their outputs standing in for their inputs. The batch ends
/// before a plan of another kind, or one that would read an output of the batch.
pub fn plan_batch(blocks: &[PlanBlock], ranges: &[i64], max: usize) -> Vec<Planned> {
    let first = plan(blocks, ranges);
    if first == Planned::Nothing {
        return Vec::new();
    }
    let mut view = blocks.to_vec();
    let mut outputs: Vec<Ulid> = Vec::new();
    let mut batch = vec![first];
    while batch.len() < max {
        let inputs = batch[batch.len() - 1].blocks();
        let merged = view.iter().filter(|b| inputs.contains(&b.ulid));
        let (min_time, max_time) = merged.fold((i64::MAX, i64::MIN), |(lo, hi), b| {
            (lo.min(b.min_time), hi.max(b.max_time))
        });
        // The output's ULID only has to differ from every block's: real ones carry a time.
        let ulid = Ulid::from_parts(0, (1u128 << 80) - 1 - outputs.len() as u128);
        view.retain(|b| !inputs.contains(&b.ulid));
        view.push(PlanBlock {
            ulid,
            min_time,
            max_time,
            failed: false,
            no_compact: false,
            num_series: 0,
            num_tombstones: 0,
        });
        outputs.push(ulid);
        let next = plan(&view, ranges);
        let same_kind = std::mem::discriminant(&next) == std::mem::discriminant(&batch[0]);
        if !same_kind || next.blocks().iter().any(|id| outputs.contains(id)) {
            break;
        }
        batch.push(next);
    }
    batch
}

/// The first run of blocks (by min time) that overlap one another.
fn select_overlapping(by_min: &[&PlanBlock]) -> Vec<Ulid> {
    let mut out = Vec::new();
    let Some(first) = by_min.first() else {
        return out;
    };
    let mut max = first.max_time;
    for (i, b) in by_min.iter().enumerate().skip(1) {
        if b.min_time < max {
            if out.is_empty() {
                out.push(by_min[i - 1].ulid);
            }
            out.push(b.ulid);
        } else if !out.is_empty() {
            break;
        }
        max = max.max(b.max_time);
    }
    out
}

/// The first window, over the ranges past the first, of two or more blocks (none failed)
/// that spans the whole range or ends before the newest block of `by_min` starts. Blocks
/// marked no-compact split a window: the longest run before or after one is taken.
fn select_level(ranges: &[i64], by_min: &[&PlanBlock]) -> Vec<Ulid> {
    if ranges.len() < 2 || by_min.is_empty() {
        return Vec::new();
    }
    let high = by_min[by_min.len() - 1].min_time;
    for &range in &ranges[1..] {
        'window: for part in split_by_range(by_min, range) {
            if part.iter().any(|b| b.failed) || part.len() < 2 {
                continue;
            }
            let (lo, hi) = (part[0].min_time, part[part.len() - 1].max_time);
            if hi - lo != range && hi > high {
                continue;
            }
            let mut last_excluded = 0;
            for (i, b) in part.iter().enumerate() {
                if !b.no_compact {
                    continue;
                }
                if i - last_excluded > 1 {
                    return part[last_excluded..i].iter().map(|b| b.ulid).collect();
                }
                last_excluded = i + 1;
            }
            if part.len() - last_excluded > 1 {
                return part[last_excluded..].iter().map(|b| b.ulid).collect();
            }
            continue 'window;
        }
    }
    Vec::new()
}

/// Splits blocks (by min time) into runs that each fit one window `[t0, t0 + range]` aligned
/// to `range`; a block wider than its window is skipped.
fn split_by_range<'a>(by_min: &[&'a PlanBlock], range: i64) -> Vec<Vec<&'a PlanBlock>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < by_min.len() {
        let m = by_min[i];
        // Go's truncating division, with the negative case rounded down as Prometheus does.
        let t0 = if m.min_time >= 0 {
            range * (m.min_time / range)
        } else {
            range * ((m.min_time - range + 1) / range)
        };
        if m.max_time > t0 + range {
            i += 1;
            continue;
        }
        let mut part = Vec::new();
        while i < by_min.len() && by_min[i].max_time <= t0 + range {
            part.push(by_min[i]);
            i += 1;
        }
        if !part.is_empty() {
            out.push(part);
        }
    }
    out
}

/// Thanos's compaction group key, `<resolution>@<hash of the external labels>`, after
/// removing `replica_labels` (so that the replicas of one source compact together).
pub fn group_key(
    labels: &BTreeMap<String, String>,
    resolution: i64,
    replica_labels: &[String],
) -> String {
    let kept: Vec<(&str, &str)> = labels
        .iter()
        .filter(|(k, _)| !replica_labels.iter().any(|r| r == *k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    format!(
        "{resolution}@{}",
        crate::labels::hash_pairs(kept.iter().copied())
    )
}

/// Blocks whose samples another block holds whole, as Thanos's deduplicate filter finds them:
/// every source of the block is a source of another block of the same resolution (of blocks
/// with the same sources, the one with the newest ULID stays). Source ULIDs are unique to the
/// block a Prometheus or receiver cut, so external labels need no comparing: a block merged
/// from replicas has no replica label and still holds them. A compaction stopped between
/// uploading its block and marking the sources leaves such blocks; readers skip them and the
/// compactor marks them.
pub fn redundant<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>) -> Vec<Ulid> {
    let key = |m: &BlockMeta| m.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
    let mut metas: Vec<&BlockMeta> = metas.into_iter().collect();
    metas.sort_by(|a, b| {
        b.compaction
            .sources
            .len()
            .cmp(&a.compaction.sources.len())
            .then(b.ulid.cmp(&a.ulid))
    });
    let mut kept: Vec<(&BlockMeta, std::collections::HashSet<Ulid>)> = Vec::new();
    let mut out = Vec::new();
    for m in metas {
        let covered = kept.iter().any(|(k, sources)| {
            key(k) == key(m) && m.compaction.sources.iter().all(|s| sources.contains(s))
        });
        if covered {
            out.push(m.ulid);
        } else {
            kept.push((m, m.compaction.sources.iter().copied().collect()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn b(n: u8, min_h: i64, max_h: i64) -> PlanBlock {
        PlanBlock {
            ulid: Ulid::from_parts(0, u128::from(n)),
            min_time: min_h * H,
            max_time: max_h * H,
            failed: false,
            no_compact: false,
            num_series: 10,
            num_tombstones: 0,
        }
    }

    fn ids(ns: &[u8]) -> Vec<Ulid> {
        ns.iter()
            .map(|&n| Ulid::from_parts(0, u128::from(n)))
            .collect()
    }

    /// Puts the output of the merge `p` in `view` in place of its inputs: a block over their
    /// range named `n`.
    fn merge_into(view: &mut Vec<PlanBlock>, p: &Planned, n: u8) {
        let inputs = p.blocks();
        let merged = view.iter().filter(|b| inputs.contains(&b.ulid));
        let (lo, hi) = merged.fold((i64::MAX, i64::MIN), |(lo, hi), b| {
            (lo.min(b.min_time), hi.max(b.max_time))
        });
        view.retain(|b| !inputs.contains(&b.ulid));
        view.push(b(n, lo / H, hi / H));
    }

    /// The plans a planner run one merge at a time makes.
    fn one_at_a_time(blocks: &[PlanBlock], ranges: &[i64]) -> Vec<Planned> {
        let mut view = blocks.to_vec();
        let mut out = Vec::new();
        for n in 200u8.. {
            let p = plan(&view, ranges);
            if p == Planned::Nothing {
                break;
            }
            merge_into(&mut view, &p, n);
            out.push(p);
        }
        out
    }

    #[test]
    fn batches_hold_the_plans_made_one_at_a_time_and_never_read_their_own_outputs() {
        let r = &THANOS_RANGES_MS;
        // Two replicas of 2h blocks over 24h, then one lone newest block.
        let mut blocks = Vec::new();
        for i in 0..12u8 {
            let at = i64::from(i) * 2;
            blocks.push(b(2 * i + 1, at, at + 2));
            blocks.push(b(2 * i + 2, at, at + 2));
        }
        blocks.push(b(100, 24, 26));
        let serial = one_at_a_time(&blocks, r);
        let overlapping = serial
            .iter()
            .filter(|p| matches!(p, Planned::Overlapping(_)))
            .count();
        assert_eq!(overlapping, 12);

        // Batches of up to 3, each merge's output standing in as the serial run's did.
        let mut view = blocks.clone();
        let mut batched = Vec::new();
        let mut n = 200u8;
        loop {
            let batch = plan_batch(&view, r, 3);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 3);
            let kinds: Vec<_> = batch.iter().map(std::mem::discriminant).collect();
            assert!(kinds.windows(2).all(|k| k[0] == k[1]));
            for p in batch {
                merge_into(&mut view, &p, n);
                n += 1;
                batched.push(p);
            }
        }
        assert_eq!(batched, serial);
        // The replicas merge three at a time.
        assert_eq!(plan_batch(&blocks, r, 3).len(), 3);
        assert_eq!(plan_batch(&blocks, r, 1).len(), 1);
        assert!(plan_batch(&[], r, 3).is_empty());
    }

    #[test]
    fn two_hour_blocks_compact_into_8h_once_the_window_is_full() {
        let r = &THANOS_RANGES_MS;
        // The newest block is left out; the three before it span 6h of the 8h window and end
        // after the newest of them starts: the window waits.
        let blocks = [b(1, 0, 2), b(2, 2, 4), b(3, 4, 6), b(4, 6, 8)];
        assert_eq!(plan(&blocks, r), Planned::Nothing);
        assert_eq!(plan(&blocks[..1], r), Planned::Nothing);
        // With a block past it, the full window is taken.
        let blocks = [b(1, 0, 2), b(2, 2, 4), b(3, 4, 6), b(4, 6, 8), b(5, 8, 10)];
        assert_eq!(plan(&blocks, r), Planned::Level(ids(&[1, 2, 3, 4])));
    }

    #[test]
    fn a_partial_window_is_taken_when_it_ends_before_the_newer_blocks() {
        let r = &THANOS_RANGES_MS;
        let blocks = [b(1, 0, 2), b(2, 2, 4), b(3, 16, 18), b(4, 18, 20)];
        assert_eq!(plan(&blocks, r), Planned::Level(ids(&[1, 2])));
        let blocks = [b(1, 8, 10), b(2, 10, 12), b(3, 12, 14)];
        assert_eq!(plan(&blocks, r), Planned::Nothing);
    }

    #[test]
    fn overlapping_blocks_come_first_and_ignore_the_newest_rule() {
        let r = &THANOS_RANGES_MS;
        let blocks = [b(1, 0, 2), b(2, 0, 2), b(3, 2, 4), b(4, 6, 8)];
        assert_eq!(plan(&blocks, r), Planned::Overlapping(ids(&[1, 2])));
        let blocks = [b(1, 0, 2), b(2, 1, 3), b(3, 2, 4), b(4, 6, 8)];
        assert_eq!(plan(&blocks, r), Planned::Overlapping(ids(&[1, 2, 3])));
        let blocks = [b(1, 0, 2), b(2, 2, 4), b(3, 6, 8), b(4, 6, 8)];
        assert_eq!(plan(&blocks, r), Planned::Overlapping(ids(&[3, 4])));
    }

    #[test]
    fn failed_and_no_compact_blocks_are_respected() {
        let r = &THANOS_RANGES_MS;
        let mut blocks = vec![b(1, 0, 2), b(2, 2, 4), b(3, 4, 6), b(4, 6, 8), b(5, 8, 10)];
        blocks[1].failed = true;
        // Every window holding blocks 1-4 holds the failed one.
        assert_eq!(plan(&blocks, r), Planned::Nothing);
        blocks[1].failed = false;
        blocks[1].no_compact = true;
        // The window is split at the marked block: 1 alone, then 3 and 4.
        assert_eq!(plan(&blocks, r), Planned::Level(ids(&[3, 4])));
        // A marked block never joins an overlap.
        let mut blocks = vec![b(1, 0, 2), b(2, 0, 2), b(3, 6, 8)];
        blocks[1].no_compact = true;
        assert_eq!(plan(&blocks, r), Planned::Nothing);
    }

    #[test]
    fn eight_hour_blocks_compact_into_2d() {
        let r = &THANOS_RANGES_MS;
        let mut blocks: Vec<PlanBlock> = (0..6).map(|i| b(i as u8 + 1, i * 8, i * 8 + 8)).collect();
        blocks.push(b(7, 48, 50));
        assert_eq!(plan(&blocks, r), Planned::Level(ids(&[1, 2, 3, 4, 5, 6])));
    }

    #[test]
    fn a_large_block_with_many_tombstones_is_rewritten_alone() {
        let r = &THANOS_RANGES_MS;
        let mut big = b(1, 0, 48);
        big.num_tombstones = 5;
        let blocks = [big.clone(), b(2, 48, 50)];
        assert_eq!(plan(&blocks, r), Planned::Tombstones(big.ulid));
        // Under 8h wide, or few deletions: left alone.
        let mut small = b(1, 0, 2);
        small.num_tombstones = 5;
        assert_eq!(plan(&[small, b(2, 48, 50)], r), Planned::Nothing);
        big.num_tombstones = 0;
        assert_eq!(plan(&[big, b(2, 48, 50)], r), Planned::Nothing);
    }

    #[test]
    fn windows_before_the_epoch_align_down() {
        let r = &THANOS_RANGES_MS;
        // [-2h, 0) and [0, 2h) sit in different 8h windows.
        let blocks = [b(1, -2, 0), b(2, 0, 2), b(3, 2, 4)];
        assert_eq!(plan(&blocks, r), Planned::Nothing);
        let blocks = [
            b(1, -8, -6),
            b(2, -6, -4),
            b(3, -4, -2),
            b(4, -2, 0),
            b(5, 0, 2),
        ];
        assert_eq!(plan(&blocks, r), Planned::Level(ids(&[1, 2, 3, 4])));
    }

    #[test]
    fn blocks_wider_than_a_window_are_skipped() {
        let r = &THANOS_RANGES_MS;
        // A 10h block fits no 8h window; the 2d window [0, 48h) takes it with its neighbour.
        let blocks = [b(1, 0, 10), b(2, 10, 12), b(3, 50, 52), b(4, 52, 54)];
        assert_eq!(plan(&blocks, r), Planned::Level(ids(&[1, 2])));
    }

    #[test]
    fn blocks_whose_sources_another_block_holds_are_redundant() {
        let meta = |n: u8, sources: &[u8], res: i64| {
            let mut m = BlockMeta {
                ulid: Ulid::from_parts(0, u128::from(n)),
                min_time: 0,
                max_time: 1,
                stats: Default::default(),
                compaction: Default::default(),
                version: 1,
                thanos: Some(crate::block::ThanosMeta::default()),
            };
            m.compaction.sources = sources
                .iter()
                .map(|&s| Ulid::from_parts(0, u128::from(s)))
                .collect();
            m.thanos.as_mut().unwrap().downsample.resolution = res;
            m
        };
        let metas = [
            meta(1, &[1], 0),
            meta(2, &[2], 0),
            meta(3, &[3], 0),
            meta(10, &[1, 2], 0),
            // Same sources, older ULID: redundant next to 12.
            meta(11, &[3], 0),
            meta(12, &[3], 0),
            // Another resolution is not a copy.
            meta(20, &[1, 2], 300_000),
            meta(21, &[1], 300_000),
        ];
        let mut r = redundant(metas.iter());
        r.sort();
        assert_eq!(r, ids(&[1, 2, 3, 11, 21]));
    }

    #[test]
    fn group_keys_ignore_replica_labels() {
        let mut a = BTreeMap::new();
        a.insert("cluster".to_string(), "eu".to_string());
        a.insert("replica".to_string(), "r1".to_string());
        let mut b = a.clone();
        b.insert("replica".to_string(), "r2".to_string());
        let rl = vec!["replica".to_string()];
        assert_eq!(group_key(&a, 0, &rl), group_key(&b, 0, &rl));
        assert_ne!(group_key(&a, 0, &[]), group_key(&b, 0, &[]));
        assert_ne!(group_key(&a, 0, &rl), group_key(&a, 300_000, &rl));
        assert!(group_key(&a, 300_000, &rl).starts_with("300000@"));
    }
}
