//! Which blocks answer a time range at a resolution, as Thanos's store gateway chooses them
//! (`bucketBlockSet.getFor`): the coarsest resolution not above the request's
//! `max_resolution_window` is used where its blocks reach, and every gap between them is filled
//! the same way with the next finer resolution, down to raw data.

use super::RESOLUTIONS;

/// What the choice needs to know of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    /// First timestamp covered, ms (inclusive).
    pub min_time: i64,
    /// End of the covered range, ms (exclusive).
    pub max_time: i64,
    /// Downsampling resolution, ms (0 = raw).
    pub resolution: i64,
}

/// Indices into `blocks` of the blocks that answer `[mint, maxt]` (ms, inclusive) with at most
/// `max_resolution` ms resolution, ordered as Thanos orders them (gap fillers before the block
/// they precede). Blocks of a resolution Thanos does not use are never chosen. Call it once
/// per group of blocks sharing external labels.
pub fn blocks_for_range(
    blocks: &[BlockSpan],
    mint: i64,
    maxt: i64,
    max_resolution: i64,
) -> Vec<usize> {
    let mut by_res: [Vec<usize>; RESOLUTIONS.len()] = Default::default();
    for (i, b) in blocks.iter().enumerate() {
        if let Some(level) = RESOLUTIONS.iter().position(|&r| r == b.resolution) {
            by_res[level].push(i);
        }
    }
    for list in &mut by_res {
        list.sort_by_key(|&i| (blocks[i].min_time, blocks[i].max_time));
    }
    let Some(level) = RESOLUTIONS.iter().position(|&r| r <= max_resolution) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    get_for(blocks, &by_res, level, mint, maxt, &mut out);
    out
}

fn get_for(
    blocks: &[BlockSpan],
    by_res: &[Vec<usize>],
    level: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<usize>,
) {
    if mint > maxt {
        return;
    }
    let finer = level + 1 < by_res.len();
    let mut start = mint;
    for &i in &by_res[level] {
        let b = blocks[i];
        if b.max_time <= mint {
            continue;
        }
        // Block ranges are half-open: [min_time, max_time).
        if b.min_time > maxt {
            break;
        }
        if finer {
            get_for(
                blocks,
                by_res,
                level + 1,
                start,
                b.min_time.saturating_sub(1),
                out,
            );
        }
        out.push(i);
        start = b.max_time;
    }
    if finer {
        get_for(blocks, by_res, level + 1, start, maxt, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downsample::{RES_1H, RES_5M};

    const H: i64 = 3_600_000;

    fn span(min_h: i64, max_h: i64, resolution: i64) -> BlockSpan {
        BlockSpan {
            min_time: min_h * H,
            max_time: max_h * H,
            resolution,
        }
    }

    #[test]
    fn coarsest_allowed_resolution_wins_and_gaps_fall_back_to_finer() {
        // Raw: four 12h blocks over 0-48h; 5m covers 0-24h; 1h covers 0-12h.
        let blocks = vec![
            span(0, 12, 0),
            span(12, 24, 0),
            span(24, 36, 0),
            span(36, 48, 0),
            span(0, 24, RES_5M),
            span(0, 12, RES_1H),
        ];
        assert_eq!(blocks_for_range(&blocks, 0, 48 * H, 0), vec![0, 1, 2, 3]);
        assert_eq!(blocks_for_range(&blocks, 0, 48 * H, RES_5M), vec![4, 2, 3]);
        // After the 1h block the gap is filled at 5m first (the 5m block reaches 24h, though it
        // overlaps the 1h block), then raw.
        assert_eq!(
            blocks_for_range(&blocks, 0, 48 * H, RES_1H),
            vec![5, 4, 2, 3]
        );
        assert_eq!(
            blocks_for_range(&blocks, 0, 48 * H, i64::MAX),
            vec![5, 4, 2, 3]
        );
        // A window inside the 1h block only needs it; one after it falls through to raw.
        assert_eq!(blocks_for_range(&blocks, 2 * H, 3 * H, RES_1H), vec![5]);
        assert_eq!(
            blocks_for_range(&blocks, 30 * H, 40 * H, RES_1H),
            vec![2, 3]
        );
        // Below 5m nothing coarser than raw qualifies.
        assert_eq!(blocks_for_range(&blocks, 0, 10, RES_5M - 1), vec![0]);
        assert_eq!(
            blocks_for_range(&blocks, 10, 0, RES_1H),
            Vec::<usize>::new()
        );
        assert_eq!(blocks_for_range(&blocks, 0, 10, -1), Vec::<usize>::new());
    }

    #[test]
    fn a_gap_in_the_middle_is_filled_by_finer_blocks() {
        let blocks = vec![
            span(0, 10, RES_5M),
            span(20, 30, RES_5M),
            span(0, 30, 0),
            span(10, 20, 0),
            span(5, 15, 7),
        ];
        // Raw blocks overlapping the 5m gap [10h, 20h) are used for it, the odd resolution
        // never.
        assert_eq!(
            blocks_for_range(&blocks, 0, 30 * H, RES_5M),
            vec![0, 2, 3, 1]
        );
    }
}
