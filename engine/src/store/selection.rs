//! Which of the bucket's blocks this store serves, for running several stores over one bucket
//! as shards: a time window (`--min-time`, `--max-time`) and relabel rules over each block's
//! external labels plus `__block_id` (`--selector.relabel-config`). A block outside the window
//! or whose relabelled set is empty is neither loaded nor advertised, and requests are cut to
//! the window, so each shard answers only for what it holds.

use std::sync::Arc;

use crate::block::BlockMeta;
use crate::labels::Labels;
use crate::relabel::{self, Rule};

/// The label holding a block's ULID while the selection's relabel rules run.
pub const BLOCK_ID_LABEL: &str = "__block_id";

/// Earliest time a store serves by default: 0000-01-01T00:00:00Z, ms.
pub const DEFAULT_MIN_TIME_MS: i64 = -62_167_219_200_000;
/// Latest time a store serves by default: 9999-12-31T23:59:59Z, ms.
pub const DEFAULT_MAX_TIME_MS: i64 = 253_402_300_799_000;

/// One end of the served time window: a fixed instant or an offset from now (negative is the
/// past), re-read at every use so a relative window moves with the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// This instant, ms since the epoch.
    At(i64),
    /// Now plus this many ms.
    FromNow(i64),
}

impl TimeBound {
    /// The bound in ms since the epoch, at `now_ms`.
    pub fn at(self, now_ms: i64) -> i64 {
        match self {
            TimeBound::At(t) => t,
            TimeBound::FromNow(d) => now_ms.saturating_add(d),
        }
    }
}

/// Why a block is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Its time range does not overlap the window.
    Time,
    /// The relabel rules dropped it (or left no label).
    Labels,
}

/// The blocks a store serves.
#[derive(Debug, Clone)]
pub struct BlockSelection {
    /// Start of the window (inclusive).
    pub min_time: TimeBound,
    /// End of the window (inclusive).
    pub max_time: TimeBound,
    /// Rules run over each block's external labels plus [`BLOCK_ID_LABEL`]; none keeps every
    /// block.
    pub relabel: Arc<Vec<Rule>>,
}

impl Default for BlockSelection {
    fn default() -> Self {
        BlockSelection {
            min_time: TimeBound::At(DEFAULT_MIN_TIME_MS),
            max_time: TimeBound::At(DEFAULT_MAX_TIME_MS),
            relabel: Arc::default(),
        }
    }
}

/// Now, ms since the epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl BlockSelection {
    /// The window `[min, max]` at `now_ms`, ms inclusive.
    pub fn window(&self, now_ms: i64) -> (i64, i64) {
        (self.min_time.at(now_ms), self.max_time.at(now_ms))
    }

    /// Whether the block `meta` describes is served at `now_ms`, or why not. A block overlaps
    /// the window when its end (exclusive in meta.json) is at or after the window's start and
    /// its start at or before the window's end, as Thanos's store decides.
    pub fn check(&self, meta: &BlockMeta, now_ms: i64) -> Result<(), Excluded> {
        let (min, max) = self.window(now_ms);
        if meta.max_time < min || meta.min_time > max {
            return Err(Excluded::Time);
        }
        if self.relabel.is_empty() {
            return Ok(());
        }
        let ext = meta.thanos.as_ref().map(|t| &t.labels);
        let labels = Labels::from_pairs(
            std::iter::once((BLOCK_ID_LABEL.to_string(), meta.ulid.to_string())).chain(
                ext.into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone())),
            ),
        );
        match relabel::process(&labels, &self.relabel) {
            Some(l) if !l.is_empty() => Ok(()),
            _ => Err(Excluded::Labels),
        }
    }

    /// `[mint, maxt]` cut to the window at `now_ms`; the result may be empty (min > max).
    pub fn clamp(&self, mint: i64, maxt: i64, now_ms: i64) -> (i64, i64) {
        let (min, max) = self.window(now_ms);
        (mint.max(min), maxt.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::ThanosMeta;
    use crate::block::meta::{BlockStats, Compaction, META_VERSION};
    use ulid::Ulid;

    fn meta(min: i64, max: i64, ext: &[(&str, &str)]) -> BlockMeta {
        BlockMeta {
            ulid: Ulid::new(),
            min_time: min,
            max_time: max,
            stats: BlockStats::default(),
            compaction: Compaction::default(),
            version: META_VERSION,
            thanos: Some(ThanosMeta {
                labels: ext
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ThanosMeta::default()
            }),
        }
    }

    fn window(min: TimeBound, max: TimeBound) -> BlockSelection {
        BlockSelection {
            min_time: min,
            max_time: max,
            ..BlockSelection::default()
        }
    }

    #[test]
    fn a_block_overlaps_the_window_by_its_exclusive_end_too() {
        let s = window(TimeBound::At(1000), TimeBound::At(2000));
        let check = |min, max| s.check(&meta(min, max, &[]), 0);
        assert_eq!(check(0, 1000), Ok(()), "its end touches the window's start");
        assert_eq!(check(0, 999), Err(Excluded::Time));
        assert_eq!(check(2000, 3000), Ok(()));
        assert_eq!(check(2001, 3000), Err(Excluded::Time));
        assert_eq!(check(0, 5000), Ok(()));
        assert_eq!(s.clamp(0, 5000, 0), (1000, 2000));
        assert_eq!(s.clamp(1500, 1600, 0), (1500, 1600));
    }

    #[test]
    fn relative_bounds_follow_the_clock() {
        let s = window(TimeBound::FromNow(-100), TimeBound::FromNow(0));
        assert_eq!(s.window(1000), (900, 1000));
        assert_eq!(s.check(&meta(0, 850, &[]), 1000), Err(Excluded::Time));
        assert_eq!(s.check(&meta(0, 850, &[]), 900), Ok(()));
        let d = BlockSelection::default();
        assert_eq!(d.window(0), (DEFAULT_MIN_TIME_MS, DEFAULT_MAX_TIME_MS));
    }

    #[test]
    fn rules_see_external_labels_and_the_block_id() {
        let rules = crate::relabel::parse_rules(
            "- action: keep\n  source_labels: [cluster, __block_id]\n  regex: eu;01.*\n",
        )
        .unwrap();
        let s = BlockSelection {
            relabel: Arc::new(rules),
            ..BlockSelection::default()
        };
        let mut m = meta(0, 10, &[("cluster", "eu")]);
        m.ulid = Ulid::from_string("01JGZ0000000000000000000AA").unwrap();
        assert_eq!(s.check(&m, 0), Ok(()));
        m.ulid = Ulid::from_string("7ZZZZZZZZZZZZZZZZZZZZZZZZZ").unwrap();
        assert_eq!(s.check(&m, 0), Err(Excluded::Labels));
        let us = meta(0, 10, &[("cluster", "us")]);
        assert_eq!(s.check(&us, 0), Err(Excluded::Labels));
        // Rules that leave no label drop the block too.
        let empty = BlockSelection {
            relabel: Arc::new(
                crate::relabel::parse_rules("- action: labeldrop\n  regex: .*\n").unwrap(),
            ),
            ..BlockSelection::default()
        };
        assert_eq!(empty.check(&m, 0), Err(Excluded::Labels));
    }
}
