//! The generator's outputs: OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`,
//! and blocks written directly with Gauntlet's block writer.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use gauntlet_engine::block::{BlockMeta, CutOptions, SeriesSamples, ThanosMeta, write_blocks};
use gauntlet_engine::chunk::STALE_NAN_BITS;
use gauntlet_engine::compact::{MergeOptions, merge_blocks};

use super::{GenConfig, GenError, Generator, Sample};

/// Block range of the written blocks, ms (Prometheus's 2 h).
pub const BLOCK_RANGE_MS: i64 = 2 * 3_600_000;

/// Writes the data of `cfg` as OpenMetrics text to `w` and returns the number of sample lines.
///
/// Stale markers are left out: OpenMetrics has no way to write one (a `NaN` there is an
/// ordinary NaN sample, which queries would return for five minutes), and an imported series
/// simply ends at its last sample.
pub fn write_openmetrics(cfg: &GenConfig, w: impl Write) -> Result<u64, GenError> {
    let mut g = Generator::new(cfg)?;
    let mut w = BufWriter::with_capacity(1 << 20, w);
    for f in g.families() {
        writeln!(w, "# TYPE {} {}", f.name, f.kind)?;
        writeln!(w, "# HELP {} {}", f.name, f.help)?;
    }
    let mut buf: Vec<Sample> = Vec::new();
    let mut line = String::with_capacity(256);
    let mut ts_text = String::new();
    let mut ts_of_text = None;
    let mut lines = 0u64;
    while {
        buf.clear();
        g.next_scrape(&mut buf)
    } {
        for s in &buf {
            if s.value.to_bits() == STALE_NAN_BITS {
                continue;
            }
            if ts_of_text != Some(s.ts_ms) {
                ts_text.clear();
                format_seconds(s.ts_ms, &mut ts_text);
                ts_of_text = Some(s.ts_ms);
            }
            line.clear();
            line.push_str(&g.series()[s.series as usize].text);
            line.push(' ');
            format_value(s.value, &mut line);
            line.push(' ');
            line.push_str(&ts_text);
            line.push('\n');
            w.write_all(line.as_bytes())?;
            lines += 1;
        }
    }
    w.write_all(b"# EOF\n")?;
    w.flush()?;
    Ok(lines)
}

/// Generates the data of `cfg` into memory, one entry per series (stale markers included), in
/// the order the series started.
pub fn collect_series(cfg: &GenConfig) -> Result<Vec<SeriesSamples>, GenError> {
    collect_targets(cfg, 0..cfg.targets)
}

/// [`collect_series`] for the targets in `targets` alone: what the full data set holds for
/// them.
fn collect_targets(cfg: &GenConfig, targets: Range<usize>) -> Result<Vec<SeriesSamples>, GenError> {
    let mut g = Generator::for_targets(cfg, targets)?;
    // Most series hold a sample every scrape: sized once, their columns never reallocate.
    let rounds = usize::try_from(cfg.duration_ms / cfg.scrape_interval_ms + 1).unwrap_or(0);
    let mut cols: Vec<(Vec<i64>, Vec<f64>)> = Vec::new();
    let mut buf: Vec<Sample> = Vec::new();
    while {
        buf.clear();
        g.next_scrape(&mut buf)
    } {
        if cols.len() < g.series().len() {
            cols.resize_with(g.series().len(), || {
                (Vec::with_capacity(rounds), Vec::with_capacity(rounds))
            });
        }
        for s in &buf {
            let c = &mut cols[s.series as usize];
            c.0.push(s.ts_ms);
            c.1.push(s.value);
        }
    }
    Ok(g.series()
        .iter()
        .zip(cols)
        .filter(|(_, (ts, _))| !ts.is_empty())
        .map(|(info, (ts, val))| SeriesSamples {
            labels: info.labels.clone(),
            ts,
            val,
        })
        .collect())
}

/// Generates the data of `cfg` and writes it as 2 h blocks under `dir` (created if missing),
/// stale markers included; returns the metas of the blocks written. Memory is bounded by
/// [`batch_targets`] targets at a time, whatever the number of targets.
pub fn write_blocks_dir(cfg: &GenConfig, dir: &Path) -> Result<Vec<BlockMeta>, GenError> {
    write_blocks_dir_with(cfg, dir, None)
}

/// [`write_blocks_dir`] with a Thanos section (external labels, source) in every block's
/// meta, as a Thanos component writing the same data would leave it.
pub fn write_blocks_dir_with(
    cfg: &GenConfig,
    dir: &Path,
    thanos: Option<ThanosMeta>,
) -> Result<Vec<BlockMeta>, GenError> {
    let batches = Batches {
        targets: batch_targets(cfg),
        scratch: None,
    };
    write_blocks_dir_batched(cfg, dir, thanos, &batches)
}

/// How [`write_blocks_dir_batched`] splits its work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batches {
    /// Targets generated at a time; 0, or at least the config's targets, generates all at
    /// once.
    pub targets: usize,
    /// Parent of the scratch directory holding the batches' blocks until they are merged;
    /// `None` puts it in the output directory. The batches hold as many bytes as the output:
    /// on another file system (a tmpfs), they do not double the output's disk for a while.
    pub scratch: Option<PathBuf>,
}

/// Generated bytes a batch may hold in memory (samples at 16 bytes, labels), before the block
/// writer's own: about 1 GiB, which keeps a generation's peak RSS within a few GiB.
pub const BATCH_BUDGET_BYTES: u64 = 1 << 30;

/// Targets generated at a time by [`write_blocks_dir`]: as many as fit [`BATCH_BUDGET_BYTES`]
/// by an estimate of their series (churn included) and samples, at least one.
pub fn batch_targets(cfg: &GenConfig) -> usize {
    let churns = if cfg.churn_every_ms > 0 {
        (cfg.duration_ms / cfg.churn_every_ms) as f64
    } else {
        0.0
    };
    let pods = cfg.pods_per_target as f64 * (1.0 + churns * cfg.churn_fraction);
    let series = 99.0 + 6.0 * pods;
    let samples = (cfg.duration_ms / cfg.scrape_interval_ms.max(1) + 1) as f64;
    // 16 bytes a sample, about 400 bytes of labels and bookkeeping a series.
    let per_target = series * (16.0 * samples + 400.0);
    ((BATCH_BUDGET_BYTES as f64 / per_target) as usize).max(1)
}

/// [`write_blocks_dir_with`] generating `batches.targets` targets at a time. Each batch is
/// written as ordinary 2 h blocks under a scratch directory, then the batches' blocks of each 2 h range are merged into one block
/// with Gauntlet's streaming compaction merge, which holds one series at a time, and the
/// scratch blocks deleted. The blocks hold the same series, samples and chunks whatever the
/// batch: targets do not depend on each other, and no series spans two batches, so the merge
/// copies every chunk as the block writer cut it. The merged blocks' metas are those of
/// freshly written blocks (level 1, their own only source).
pub fn write_blocks_dir_batched(
    cfg: &GenConfig,
    dir: &Path,
    thanos: Option<ThanosMeta>,
    batches: &Batches,
) -> Result<Vec<BlockMeta>, GenError> {
    cfg.validate()?;
    std::fs::create_dir_all(dir)?;
    let batch = batches.targets;
    if batch == 0 || batch >= cfg.targets {
        let series = collect_series(cfg)?;
        return Ok(write_blocks(
            dir,
            series,
            BLOCK_RANGE_MS,
            CutOptions::default(),
            thanos,
        )?);
    }
    let scratch = batches.scratch.as_deref().unwrap_or(dir).join(SCRATCH_DIR);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let written = write_batches(cfg, dir, &scratch, thanos, batch);
    // The scratch blocks are only inputs: gone whether or not the merge succeeded.
    let removed = std::fs::remove_dir_all(&scratch);
    let metas = written?;
    removed?;
    Ok(metas)
}

/// Directory holding the batches' blocks while they are merged (under the output directory
/// or [`Batches::scratch`]); removed at the end.
const SCRATCH_DIR: &str = "gen-batches.tmp";

fn write_batches(
    cfg: &GenConfig,
    dir: &Path,
    scratch: &Path,
    thanos: Option<ThanosMeta>,
    batch: usize,
) -> Result<Vec<BlockMeta>, GenError> {
    // Block directories of every batch, by 2 h range.
    let mut ranges: BTreeMap<i64, Vec<PathBuf>> = BTreeMap::new();
    for (i, lo) in (0..cfg.targets).step_by(batch).enumerate() {
        let series = collect_targets(cfg, lo..(lo + batch).min(cfg.targets))?;
        let parent = scratch.join(format!("{i:05}"));
        std::fs::create_dir_all(&parent)?;
        let metas = write_blocks(&parent, series, BLOCK_RANGE_MS, CutOptions::default(), None)?;
        for m in metas {
            ranges
                .entry(m.min_time.div_euclid(BLOCK_RANGE_MS))
                .or_default()
                .push(parent.join(m.ulid.to_string()));
        }
    }
    let mut out = Vec::with_capacity(ranges.len());
    for inputs in ranges.values() {
        let opts = MergeOptions {
            thanos: thanos.clone(),
            ..MergeOptions::default()
        };
        let (meta, _) = merge_blocks(inputs, dir, &opts)?;
        // Every input holds a series, so the merge wrote a block.
        let Some(mut meta) = meta else { continue };
        meta.compaction.level = 1;
        meta.compaction.sources = vec![meta.ulid];
        meta.compaction.parents.clear();
        meta.write(&dir.join(meta.ulid.to_string()))
            .map_err(gauntlet_engine::Error::from)?;
        for input in inputs {
            std::fs::remove_dir_all(input)?;
        }
        out.push(meta);
    }
    Ok(out)
}

/// Writes `ms` as seconds with up to three decimals.
fn format_seconds(ms: i64, out: &mut String) {
    use std::fmt::Write as _;
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (s, frac) = (abs / 1000, abs % 1000);
    let _ = if frac == 0 {
        write!(out, "{sign}{s}")
    } else if frac % 100 == 0 {
        write!(out, "{sign}{s}.{}", frac / 100)
    } else if frac % 10 == 0 {
        write!(out, "{sign}{s}.{:02}", frac / 10)
    } else {
        write!(out, "{sign}{s}.{frac:03}")
    };
}

/// Writes `v` so that parsing it gives back the same bits (finite values and NaN only).
fn format_value(v: f64, out: &mut String) {
    use std::fmt::Write as _;
    // Most values are whole numbers; integer formatting is faster than float formatting.
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}
