//! What the compactor is doing and what it has left to do: the step a pass is in, the groups
//! done and the merges under way, the work still planned (compactions, downsamplings, blocks
//! past retention: Thanos's `thanos_compact_todo_*` gauges), the last pass's outcome, and the
//! state of each block of the bucket as the status page shows it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use gauntlet_engine::compact::{PlanBlock, Planned, group_key, plan};
use gauntlet_engine::downsample::{RES_1H, RES_5M, RES_RAW};
use serde_json::{Value, json};
use ulid::Ulid;

use crate::blocks::SyncedBlock;
use crate::compact::{CompactConfig, PassReport, settled};

/// The steps of a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Between passes.
    #[default]
    Idle,
    /// Reading every block's meta.json and markers.
    Syncing,
    /// Compacting groups.
    Compacting,
    /// Downsampling.
    Downsampling,
    /// Marking blocks past retention and deleting those marked long enough ago.
    Cleaning,
}

impl Phase {
    /// Its name on the status page.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Syncing => "syncing",
            Phase::Compacting => "compacting",
            Phase::Downsampling => "downsampling",
            Phase::Cleaning => "cleaning",
        }
    }
}

/// Work the planner would still do over the bucket as last synced.
#[derive(Debug, Clone, Default)]
pub struct Todo {
    /// Compactions planned, counting those whose inputs are yet to be made.
    pub compactions: usize,
    /// Blocks of the bucket that are inputs of a planned compaction.
    pub compaction_blocks: BTreeSet<Ulid>,
    /// Blocks due for downsampling, with the resolution they will be downsampled to.
    pub downsample_blocks: BTreeMap<Ulid, i64>,
    /// Blocks past their resolution's retention and not yet marked for deletion.
    pub retention_blocks: BTreeSet<Ulid>,
}

/// A finished pass.
#[derive(Debug, Clone, Default)]
pub struct LastPass {
    /// When it started and finished, ms since the epoch.
    pub started_ms: i64,
    /// See `started_ms`.
    pub finished_ms: i64,
    /// What it did; `None` when it failed before its end (`error` says why).
    pub report: Option<PassReport>,
    /// Why the pass stopped early.
    pub error: Option<String>,
}

/// The compactor's progress, shared between the pass and the status endpoint.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The step the current pass is in.
    pub phase: Phase,
    /// When the current pass started, ms (0 between passes).
    pub started_ms: i64,
    /// Groups with settled blocks in the current pass.
    pub groups_total: usize,
    /// Groups the current pass is done with.
    pub groups_done: usize,
    /// Merges under way: group and input blocks.
    pub merging: Vec<(String, Vec<Ulid>)>,
    /// The block being downsampled.
    pub downsampling: Option<Ulid>,
    /// Work left, as of the last sync or step.
    pub todo: Todo,
    /// When `todo` was computed, ms (0: never).
    pub todo_at_ms: i64,
    /// The last finished pass.
    pub last: Option<LastPass>,
}

impl Progress {
    /// The JSON of `/api/v1/status/compactor`.
    pub fn to_json(&self) -> Value {
        let ids = |v: &[Ulid]| v.iter().map(Ulid::to_string).collect::<Vec<_>>();
        let last = self.last.as_ref().map(|l| {
            let r = l.report.clone().unwrap_or_default();
            json!({
                "startTime": l.started_ms,
                "endTime": l.finished_ms,
                "error": l.error,
                "compacted": ids(&r.compacted),
                "downsampled": ids(&r.downsampled),
                "markedForDeletion": ids(&r.marked),
                "deleted": ids(&r.deleted),
                "convertedToParquet": ids(&r.converted),
                "halted": r.halted.iter().map(|(g, why)| json!({"group": g, "reason": why})).collect::<Vec<_>>(),
                "failures": r.failures,
            })
        });
        json!({
            "phase": self.phase.name(),
            "passStartTime": (self.started_ms > 0).then_some(self.started_ms),
            "groupsTotal": self.groups_total,
            "groupsDone": self.groups_done,
            "merging": self.merging.iter().map(|(g, inputs)| json!({"group": g, "blocks": ids(inputs)})).collect::<Vec<_>>(),
            "downsampling": self.downsampling.map(|u| u.to_string()),
            "todo": {
                "computedAt": (self.todo_at_ms > 0).then_some(self.todo_at_ms),
                "compactions": self.todo.compactions,
                "compactionBlocks": self.todo.compaction_blocks.len(),
                "downsampleBlocks": self.todo.downsample_blocks.len(),
                "retentionBlocks": self.todo.retention_blocks.len(),
            },
            "lastPass": last,
        })
    }
}

/// The work left over `blocks` at `now` (ms): each group's plan followed to its end (a
/// planned merge stands in for its output, so the compactions after it count too), the
/// blocks due for downsampling and those past retention.
pub fn todo(blocks: &BTreeMap<Ulid, SyncedBlock>, cfg: &CompactConfig, now: i64) -> Todo {
    let mut out = Todo::default();
    let mut groups: BTreeMap<String, Vec<PlanBlock>> = BTreeMap::new();
    for b in blocks.values() {
        if b.deletion.is_none() && settled(b, cfg, now) {
            let key = group_key(&b.labels(), b.resolution(), &cfg.replica_labels);
            groups
                .entry(key)
                .or_default()
                .push(PlanBlock::from_meta(&b.meta, b.no_compact));
        }
    }
    // Stand-ins for planned outputs get ULIDs no real block has (time 0).
    let mut next_stand_in = 1u128;
    for mut group in groups.into_values() {
        let raw = group_resolution(blocks, &group) == RES_RAW;
        // A group's plans end; the bound only guards against a planner that never would.
        for _ in 0..10_000 {
            let planned = plan(&group, &cfg.ranges);
            let inputs = planned.blocks();
            if inputs.is_empty() {
                break;
            }
            if matches!(planned, Planned::Overlapping(_)) && (!raw || !cfg.vertical) {
                // Marked no-compact or halted, not compacted.
                break;
            }
            out.compactions += 1;
            let real: Vec<Ulid> = inputs
                .iter()
                .filter(|u| blocks.contains_key(u))
                .copied()
                .collect();
            out.compaction_blocks.extend(real);
            let taken: Vec<PlanBlock> = group
                .iter()
                .filter(|b| inputs.contains(&b.ulid))
                .cloned()
                .collect();
            group.retain(|b| !inputs.contains(&b.ulid));
            let stand_in = PlanBlock {
                ulid: Ulid(next_stand_in),
                min_time: taken.iter().map(|b| b.min_time).min().unwrap_or(0),
                max_time: taken.iter().map(|b| b.max_time).max().unwrap_or(0),
                failed: false,
                no_compact: false,
                num_series: taken.iter().map(|b| b.num_series).sum(),
                num_tombstones: 0,
            };
            next_stand_in += 1;
            group.push(stand_in);
        }
    }
    for (from, to) in [(RES_RAW, RES_5M), (RES_5M, RES_1H)] {
        for id in downsample_due(blocks, from, to) {
            out.downsample_blocks.insert(id, to);
        }
    }
    out.retention_blocks = past_retention(blocks, &cfg.retention, now)
        .into_iter()
        .collect();
    out
}

fn group_resolution(blocks: &BTreeMap<Ulid, SyncedBlock>, group: &[PlanBlock]) -> i64 {
    group
        .first()
        .and_then(|b| blocks.get(&b.ulid))
        .map_or(RES_RAW, SyncedBlock::resolution)
}

/// The shortest span a block of resolution `from` needs to be downsampled to `to` (40 hours
/// for raw blocks, 10 days for 5m blocks, as Thanos).
pub fn downsample_span(from: i64) -> i64 {
    if from == RES_RAW {
        40 * 3_600_000
    } else {
        10 * 86_400_000
    }
}

/// Live blocks of resolution `from`, long enough and not marked no-downsample, whose sources
/// no live block of resolution `to` holds all of.
pub fn downsample_due(blocks: &BTreeMap<Ulid, SyncedBlock>, from: i64, to: i64) -> Vec<Ulid> {
    let covered = coverage(blocks, to);
    blocks
        .values()
        .filter(|b| {
            b.deletion.is_none()
                && !b.no_downsample
                && b.resolution() == from
                && b.meta.max_time - b.meta.min_time >= downsample_span(from)
                && !covered_by(b, &covered)
        })
        .map(|b| b.meta.ulid)
        .collect()
}

fn coverage(blocks: &BTreeMap<Ulid, SyncedBlock>, res: i64) -> Vec<HashSet<Ulid>> {
    blocks
        .values()
        .filter(|b| b.deletion.is_none() && b.resolution() == res)
        .map(|b| b.meta.compaction.sources.iter().copied().collect())
        .collect()
}

fn covered_by(b: &SyncedBlock, covered: &[HashSet<Ulid>]) -> bool {
    covered
        .iter()
        .any(|c| b.meta.compaction.sources.iter().all(|s| c.contains(s)))
}

/// Live blocks whose data ended longer ago than their resolution's retention (`retention`:
/// raw, 5m, 1h; zero keeps forever).
pub fn past_retention(
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    retention: &[Duration; 3],
    now: i64,
) -> Vec<Ulid> {
    blocks
        .values()
        .filter(|b| b.deletion.is_none())
        .filter(|b| {
            let keep = match b.resolution() {
                RES_RAW => retention[0],
                RES_5M => retention[1],
                RES_1H => retention[2],
                _ => Duration::ZERO,
            };
            !keep.is_zero() && now - b.meta.max_time > keep.as_millis() as i64
        })
        .map(|b| b.meta.ulid)
        .collect()
}

/// Each block's state for the blocks page: whether this process serves it, its markers, where
/// it stands in compaction and downsampling. `todo` is the compactor's plan when one runs in
/// this process.
pub fn block_states(
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    served: &HashSet<Ulid>,
    todo: Option<&Todo>,
) -> BTreeMap<Ulid, Value> {
    let covered_5m = coverage(blocks, RES_5M);
    let covered_1h = coverage(blocks, RES_1H);
    blocks
        .values()
        .map(|b| {
            let id = b.meta.ulid;
            let compaction = if b.deletion.is_some() {
                "replaced: marked for deletion".to_string()
            } else if b.no_compact {
                "excluded: marked no-compact".to_string()
            } else if todo.is_some_and(|t| t.compaction_blocks.contains(&id)) {
                "due: input of a planned compaction".to_string()
            } else if b.meta.compaction.level <= 1 {
                "not compacted yet".to_string()
            } else {
                format!(
                    "compacted from {} source blocks",
                    b.meta.compaction.sources.len()
                )
            };
            let res = b.resolution();
            let downsampling = match res {
                _ if b.deletion.is_some() => "none: marked for deletion".to_string(),
                _ if b.no_downsample => "excluded: marked no-downsample".to_string(),
                RES_1H => "final resolution (1h)".to_string(),
                RES_RAW | RES_5M => {
                    let (covered, to) = if res == RES_RAW {
                        (&covered_5m, "5m")
                    } else {
                        (&covered_1h, "1h")
                    };
                    if covered_by(b, covered) {
                        format!("downsampled to {to}")
                    } else if b.meta.max_time - b.meta.min_time >= downsample_span(res) {
                        format!("due for {to}")
                    } else {
                        format!(
                            "not yet: shorter than the {} a {to} block needs",
                            if res == RES_RAW { "40h" } else { "10d" }
                        )
                    }
                }
                other => format!("unknown resolution {other} ms"),
            };
            let retention = todo.is_some_and(|t| t.retention_blocks.contains(&id));
            (
                id,
                json!({
                    "served": served.contains(&id),
                    "deletionMarkTime": b.deletion.as_ref().map(|m| m.deletion_time),
                    "noCompact": b.no_compact,
                    "noDownsample": b.no_downsample,
                    "compaction": compaction,
                    "downsampling": downsampling,
                    "pastRetention": retention,
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::block::{BlockMeta, DeletionMark};

    const H: i64 = 3_600_000;

    fn block(id: u128, min: i64, max: i64, level: u32, sources: &[u128], res: i64) -> SyncedBlock {
        let mut meta = BlockMeta::new(Ulid(id), min, max);
        meta.compaction.level = level;
        meta.compaction.sources = sources.iter().map(|s| Ulid(*s)).collect();
        let mut t = gauntlet_engine::block::ThanosMeta::default();
        t.labels.insert("cluster".into(), "a".into());
        t.downsample.resolution = res;
        t.source = "compactor".into();
        meta.thanos = Some(t);
        SyncedBlock {
            meta,
            deletion: None,
            no_compact: false,
            no_downsample: false,
        }
    }

    fn cfg() -> CompactConfig {
        CompactConfig {
            data_dir: "/nonexistent".into(),
            replica_labels: Vec::new(),
            dedup: gauntlet_engine::compact::Dedup::Chain,
            vertical: false,
            retention: [
                Duration::from_secs(30 * 86_400),
                Duration::ZERO,
                Duration::ZERO,
            ],
            delete_delay: Duration::from_secs(3600),
            downsampling: true,
            consistency_delay: Duration::ZERO,
            ranges: gauntlet_engine::compact::plan::THANOS_RANGES_MS.to_vec(),
            cpu_share: None,
            concurrency: 1,
            max_index_bytes: u64::MAX,
            parquet: None,
        }
    }

    fn map(v: Vec<SyncedBlock>) -> BTreeMap<Ulid, SyncedBlock> {
        v.into_iter().map(|b| (b.meta.ulid, b)).collect()
    }

    #[test]
    fn todo_counts_the_compactions_a_plan_leads_to() {
        // Twelve 2h blocks of one day: six 2h→… merges into 8h blocks need three compactions
        // (each of the first two 8h windows whole; the third is the newest range and stays
        // open until a block past it arrives), then nothing more within the day.
        let day = 1_700_006_400_000 / (24 * H) * (24 * H);
        let blocks = map((0..12)
            .map(|i| {
                let min = day + i as i64 * 2 * H;
                block(100 + i, min, min + 2 * H, 1, &[100 + i], RES_RAW)
            })
            .collect());
        let t = todo(&blocks, &cfg(), day + 30 * 24 * H);
        assert!(t.compactions >= 2, "{t:?}");
        assert!(t.compaction_blocks.len() >= 8, "{t:?}");
        assert!(t.compaction_blocks.iter().all(|u| blocks.contains_key(u)));
        // Past the 30 days of raw retention at day + 31d.
        let later = todo(&blocks, &cfg(), day + 32 * 24 * H);
        assert_eq!(later.retention_blocks.len(), 12);
    }

    #[test]
    fn a_long_raw_block_is_due_for_downsampling_until_a_5m_block_holds_its_sources() {
        let mut blocks = map(vec![block(1, 0, 48 * H, 3, &[1], RES_RAW)]);
        let t = todo(&blocks, &cfg(), 50 * H);
        assert_eq!(t.downsample_blocks.get(&Ulid(1)), Some(&RES_5M));
        let states = block_states(&blocks, &HashSet::new(), Some(&t));
        assert_eq!(states[&Ulid(1)]["downsampling"], "due for 5m");
        assert_eq!(states[&Ulid(1)]["served"], false);

        blocks.insert(Ulid(2), block(2, 0, 48 * H, 3, &[1], RES_5M));
        let t = todo(&blocks, &cfg(), 50 * H);
        assert!(t.downsample_blocks.is_empty(), "{t:?}");
        let served: HashSet<Ulid> = [Ulid(2)].into();
        let states = block_states(&blocks, &served, Some(&t));
        assert_eq!(states[&Ulid(1)]["downsampling"], "downsampled to 5m");
        assert_eq!(states[&Ulid(2)]["served"], true);
        assert!(
            states[&Ulid(2)]["downsampling"]
                .as_str()
                .unwrap()
                .starts_with("not yet"),
            "{states:?}"
        );
    }

    #[test]
    fn markers_show_in_a_blocks_state() {
        let mut b = block(1, 0, 2 * H, 1, &[1], RES_RAW);
        b.deletion = Some(DeletionMark::new(Ulid(1), 1_700_000_000, "test"));
        let mut c = block(2, 2 * H, 4 * H, 1, &[2], RES_RAW);
        c.no_compact = true;
        let blocks = map(vec![b, c]);
        let s = block_states(&blocks, &HashSet::new(), None);
        assert_eq!(s[&Ulid(1)]["compaction"], "replaced: marked for deletion");
        assert_eq!(s[&Ulid(1)]["deletionMarkTime"], 1_700_000_000);
        assert_eq!(s[&Ulid(2)]["compaction"], "excluded: marked no-compact");
        let t = todo(&blocks, &cfg(), 10 * H);
        assert_eq!(t.compactions, 0);
    }
}
