//! `gauntlet tools bucket ls | inspect | verify | mark | cleanup | rewrite`: the blocks of an
//! object-storage bucket listed, checked, marked, cleaned up and rewritten, as Thanos's
//! `tools bucket` commands do. Each command reads the bucket's blocks afresh; what is about a
//! block's data (verification, the rewrite) is the engine's, this file asks and prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use gauntlet_engine::block::markers::REASON_MANUAL;
use gauntlet_engine::block::verify::{overlaps, verify_block};
use gauntlet_engine::block::{Block, BlockMeta, DeletionMark, NoCompactMark, NoDownsampleMark};
use gauntlet_engine::bucket::Bucket;
use gauntlet_engine::compact::redundant;
use gauntlet_engine::compact::rewrite::{SelectedSeries, delete_series, for_each_selected};
use gauntlet_engine::downsample::{RES_1H, RES_5M, RES_RAW};
use gauntlet_engine::labels::Matcher;
use gauntlet_promql::parse_selector;
use indicatif::ProgressBar;

use super::progress_bar;
use ulid::Ulid;

use crate::blocks::{
    BucketBlocks, SyncedBlock, abandoned_uploads, convert_to_parquet, delete_block, deletion_due,
    download_block, has_parquet, read_object, sync_blocks, upload_block,
};
use crate::now_ms;
use crate::store::ObjstoreArgs;

/// Bucket commands.
#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Lists the blocks, one line each, by min time; partial uploads (no meta.json) too.
    Ls {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// `table`, `wide` (the table with each block's markers) or `json` (each meta.json on
        /// a line of its own; partial uploads left out).
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: LsOutput,
        /// Leave out blocks marked for deletion.
        #[arg(long = "exclude-delete")]
        exclude_delete: bool,
    },
    /// Prints a table of the blocks: time range, counts, compaction level, labels, resolution.
    Inspect {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Only blocks whose external labels match, e.g. `cluster="eu1"` or `env=~"prod.*"`;
        /// repeatable, all must match.
        #[arg(short = 'l', long = "selector")]
        selectors: Vec<String>,
        /// Columns to sort by, in order (comma-separated or repeated).
        #[arg(long = "sort-by", value_delimiter = ',', default_values = ["FROM", "UNTIL"])]
        sort_by: Vec<String>,
    },
    /// Downloads blocks and checks them: meta.json, index, chunks, stats; across blocks,
    /// overlaps within a group and blocks another block holds whole. Exits non-zero when
    /// anything is wrong.
    Verify {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Blocks to check (repeatable); every block not marked for deletion when absent.
        #[arg(long = "id", value_parser = parse_ulid)]
        ids: Vec<Ulid>,
        /// Checks to run (comma-separated or repeated).
        #[arg(
            short = 'i',
            long = "issues",
            value_enum,
            value_delimiter = ',',
            default_values = ["index_known_issues", "overlapped_blocks", "duplicated_compaction"]
        )]
        issues: Vec<IssueKind>,
    },
    /// Writes or, with `--remove`, deletes a marker of blocks.
    Mark {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Blocks to mark (repeatable).
        #[arg(long = "id", required = true, value_parser = parse_ulid)]
        ids: Vec<Ulid>,
        /// `deletion-mark.json`, `no-compact-mark.json` or `no-downsample-mark.json`.
        #[arg(long = "marker")]
        marker: String,
        /// Why, for whoever reads the marker later.
        #[arg(
            long = "details",
            required_unless_present = "remove",
            default_value = ""
        )]
        details: String,
        /// Delete the marker instead of writing it.
        #[arg(long = "remove")]
        remove: bool,
    },
    /// Deletes blocks marked for deletion longer ago than `--delete-delay`, and partial uploads
    /// abandoned for two days.
    Cleanup {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Time between a block's deletion mark and its deletion (readers stop using it first).
        #[arg(long = "delete-delay", default_value = "48h", value_parser = humantime::parse_duration)]
        delete_delay: Duration,
    },
    /// Writes each block anew without the series `--delete-series` selects, uploads it and
    /// marks the source block for deletion.
    Rewrite {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Blocks to rewrite (repeatable).
        #[arg(long = "id", required = true, value_parser = parse_ulid)]
        ids: Vec<Ulid>,
        /// Series selector, e.g. `{__name__="up",job=~"node.*"}`; repeatable (a series
        /// matching any is deleted).
        #[arg(long = "delete-series", required = true)]
        delete_series: Vec<String>,
        /// Only print the series that would be deleted, with their samples; change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Converts blocks to Parquet shards (`N.labels.parquet`, `N.chunks.parquet`) in each
    /// block's directory, streaming, one row group in memory at a time. Chunk files go up
    /// before labels files, and shard 0's labels file last: a store sees a block's shards
    /// once they are all there.
    Convert {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Target format.
        #[arg(long = "to", value_enum)]
        to: ConvertTo,
        /// Blocks to convert (repeatable); when absent, every raw block not marked for
        /// deletion and not converted yet.
        #[arg(long = "id", value_parser = parse_ulid)]
        ids: Vec<Ulid>,
        /// Most rows (series) in a row group.
        #[arg(long = "parquet.row-group-size", default_value_t = gauntlet_engine::parquet::DEFAULT_ROW_GROUP_ROWS as u64, value_parser = clap::value_parser!(u64).range(1..))]
        row_group_rows: u64,
        /// Most rows in a shard; past it a new shard starts (0 = one shard).
        #[arg(long = "parquet.shard-size", default_value_t = 0)]
        shard_rows: usize,
        /// Time one chunk column spans.
        #[arg(long = "parquet.column-duration", default_value = "8h", value_parser = humantime::parse_duration)]
        col_duration: Duration,
        /// Delete the block's TSDB index and chunks once its shards are uploaded (stores then
        /// serve it from Parquet in their default mode).
        #[arg(long = "delete-tsdb")]
        delete_tsdb: bool,
    },
}

/// Formats `bucket convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConvertTo {
    /// Prometheus-on-Parquet shards.
    Parquet,
}

/// How `ls` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LsOutput {
    /// A table, one block a line.
    Table,
    /// The table with each block's markers.
    Wide,
    /// Each meta.json as one line of JSON.
    Json,
}

/// The checks `verify` runs, named as Thanos names its issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum IssueKind {
    /// Each block on its own: meta.json, index, chunks and stats.
    IndexKnownIssues,
    /// Blocks of one group (same external labels and resolution) that overlap in time.
    OverlappedBlocks,
    /// Blocks whose sources another block of their resolution holds whole.
    DuplicatedCompaction,
}

impl IssueKind {
    fn name(self) -> &'static str {
        match self {
            IssueKind::IndexKnownIssues => "index_known_issues",
            IssueKind::OverlappedBlocks => "overlapped_blocks",
            IssueKind::DuplicatedCompaction => "duplicated_compaction",
        }
    }
}

fn parse_ulid(s: &str) -> Result<Ulid, String> {
    Ulid::from_string(s).map_err(|e| format!("{s:?} is not a block ULID: {e}"))
}

/// Runs a bucket command.
pub fn run(cmd: BucketCmd) -> anyhow::Result<()> {
    let objstore = match &cmd {
        BucketCmd::Ls { objstore, .. }
        | BucketCmd::Inspect { objstore, .. }
        | BucketCmd::Verify { objstore, .. }
        | BucketCmd::Mark { objstore, .. }
        | BucketCmd::Cleanup { objstore, .. }
        | BucketCmd::Rewrite { objstore, .. }
        | BucketCmd::Convert { objstore, .. } => objstore.clone(),
    };
    let cfg = objstore.bucket_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-tools")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let bucket = Bucket::open(&cfg)?;
        match cmd {
            BucketCmd::Ls {
                output,
                exclude_delete,
                ..
            } => ls(&bucket, output, exclude_delete).await,
            BucketCmd::Inspect {
                selectors, sort_by, ..
            } => inspect(&bucket, &selectors, &sort_by).await,
            BucketCmd::Verify { ids, issues, .. } => verify(&bucket, &ids, &issues).await,
            BucketCmd::Mark {
                ids,
                marker,
                details,
                remove,
                ..
            } => mark(&bucket, &ids, &marker, &details, remove).await,
            BucketCmd::Cleanup { delete_delay, .. } => cleanup(&bucket, delete_delay).await,
            BucketCmd::Rewrite {
                ids,
                delete_series,
                dry_run,
                ..
            } => rewrite(&bucket, &ids, &delete_series, dry_run).await,
            BucketCmd::Convert {
                to: ConvertTo::Parquet,
                ids,
                row_group_rows,
                shard_rows,
                col_duration,
                delete_tsdb,
                ..
            } => {
                let opts = gauntlet_engine::parquet::write::ConvertOptions {
                    row_group_rows: row_group_rows as usize,
                    shard_rows: if shard_rows == 0 {
                        usize::MAX
                    } else {
                        shard_rows
                    },
                    col_duration_ms: i64::try_from(col_duration.as_millis())
                        .ok()
                        .filter(|&ms| ms > 0)
                        .context("--parquet.column-duration must be positive")?,
                    ..Default::default()
                };
                convert_parquet(&bucket, &ids, &opts, delete_tsdb).await
            }
        }
    })
}

async fn ls(bucket: &Bucket, output: LsOutput, exclude_delete: bool) -> anyhow::Result<()> {
    let found = sync_blocks(bucket).await?;
    let mut blocks: Vec<&SyncedBlock> = found
        .blocks
        .values()
        .filter(|b| !exclude_delete || b.deletion.is_none())
        .collect();
    blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time, b.meta.ulid));
    let mut out = std::io::stdout().lock();
    if output == LsOutput::Json {
        for b in blocks {
            writeln!(out, "{}", serde_json::to_string(&b.meta)?)?;
        }
        return Ok(());
    }
    let wide = output == LsOutput::Wide;
    let mut header = vec![
        "ULID",
        "FROM",
        "UNTIL",
        "RANGE",
        "LEVEL",
        "RESOLUTION",
        "#SERIES",
        "#SAMPLES",
        "#CHUNKS",
        "LABELS",
        "SOURCE",
    ];
    if wide {
        header.push("MARKERS");
    }
    let mut rows = Vec::new();
    for b in blocks {
        let m = &b.meta;
        let mut row = vec![
            m.ulid.to_string(),
            rfc3339(m.min_time),
            rfc3339(m.max_time),
            go_duration(m.max_time - m.min_time),
            m.compaction.level.to_string(),
            go_duration(b.resolution()),
            m.stats.num_series.to_string(),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            show_labels(&b.labels()),
            source(m),
        ];
        if wide {
            row.push(markers(b));
        }
        rows.push(row);
    }
    for (id, what) in not_blocks(&found) {
        let mut row = vec![id.to_string()];
        row.extend(std::iter::repeat_n("-".to_string(), 9));
        row.push(what);
        if wide {
            row.push("-".into());
        }
        rows.push(row);
    }
    print_table(&mut out, &header, &rows)?;
    Ok(())
}

/// Directories of the bucket that are no readable block, by ULID, with what they are.
fn not_blocks(found: &BucketBlocks) -> Vec<(Ulid, String)> {
    let mut v: Vec<(Ulid, String)> = found
        .partial
        .iter()
        .map(|id| (*id, "partial upload (no meta.json)".to_string()))
        .chain(
            found
                .unusable
                .iter()
                .map(|(id, why)| (*id, format!("unusable: {why}"))),
        )
        .collect();
    v.sort();
    v
}

/// The markers of a block as `ls -o wide` shows them.
fn markers(b: &SyncedBlock) -> String {
    let mut v = Vec::new();
    if let Some(d) = &b.deletion {
        let at = rfc3339(d.deletion_time.saturating_mul(1000));
        if d.details.is_empty() {
            v.push(format!("deletion({at})"));
        } else {
            v.push(format!("deletion({at}: {})", d.details));
        }
    }
    if b.no_compact {
        v.push("no-compact".to_string());
    }
    if b.no_downsample {
        v.push("no-downsample".to_string());
    }
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(",")
    }
}

fn source(m: &BlockMeta) -> String {
    match m.thanos.as_ref().map(|t| t.source.as_str()) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// Columns of `inspect`, as Thanos names them.
const INSPECT_COLUMNS: [&str; 13] = [
    "ULID",
    "FROM",
    "UNTIL",
    "RANGE",
    "UNTIL-DOWN",
    "#SERIES",
    "#SAMPLES",
    "#CHUNKS",
    "COMP-LEVEL",
    "COMP-FAILED",
    "LABELS",
    "RESOLUTION",
    "SOURCE",
];

async fn inspect(bucket: &Bucket, selectors: &[String], sort_by: &[String]) -> anyhow::Result<()> {
    let mut columns = Vec::new();
    for c in sort_by {
        let want = c.trim().to_ascii_uppercase();
        let Some(i) = INSPECT_COLUMNS
            .iter()
            .position(|k| *k == want || k.trim_start_matches('#') == want)
        else {
            bail!(
                "--sort-by={c:?}: no such column; columns are {}",
                INSPECT_COLUMNS.join(", ")
            );
        };
        columns.push(i);
    }
    let mut matchers: Vec<Matcher> = Vec::new();
    for s in selectors {
        let ms = parse_selector(&format!("{{{s}}}"))
            .with_context(|| format!("--selector={s:?} (want name=\"value\")"))?;
        matchers.extend(ms);
    }
    let found = sync_blocks(bucket).await?;
    let mut blocks: Vec<&SyncedBlock> = found
        .blocks
        .values()
        .filter(|b| {
            let labels = b.labels();
            matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).map_or("", String::as_str)))
        })
        .collect();
    blocks.sort_by(|a, b| {
        columns
            .iter()
            .map(|&c| inspect_key(a, c).cmp(&inspect_key(b, c)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.meta.ulid.cmp(&b.meta.ulid))
    });
    let rows: Vec<Vec<String>> = blocks
        .iter()
        .map(|b| {
            let m = &b.meta;
            vec![
                m.ulid.to_string(),
                rfc3339(m.min_time),
                rfc3339(m.max_time),
                go_duration(m.max_time - m.min_time),
                until_downsampling(b).map_or("-".to_string(), go_duration),
                m.stats.num_series.to_string(),
                m.stats.num_samples.to_string(),
                m.stats.num_chunks.to_string(),
                m.compaction.level.to_string(),
                m.compaction.failed.to_string(),
                show_labels(&b.labels()),
                go_duration(b.resolution()),
                source(m),
            ]
        })
        .collect();
    print_table(&mut std::io::stdout().lock(), &INSPECT_COLUMNS, &rows)?;
    Ok(())
}

/// A block's sort key for column `c` of [`INSPECT_COLUMNS`]: numbers compare as numbers.
fn inspect_key(b: &SyncedBlock, c: usize) -> (i64, String) {
    let m = &b.meta;
    let n = |v: u64| (i64::try_from(v).unwrap_or(i64::MAX), String::new());
    match c {
        0 => (0, m.ulid.to_string()),
        1 => (m.min_time, String::new()),
        2 => (m.max_time, String::new()),
        3 => (m.max_time - m.min_time, String::new()),
        4 => (until_downsampling(b).unwrap_or(i64::MAX), String::new()),
        5 => n(m.stats.num_series),
        6 => n(m.stats.num_samples),
        7 => n(m.stats.num_chunks),
        8 => (i64::from(m.compaction.level), String::new()),
        9 => (i64::from(m.compaction.failed), String::new()),
        10 => (0, show_labels(&b.labels())),
        11 => (b.resolution(), String::new()),
        _ => (0, source(m)),
    }
}

/// How much longer a block must span before the compactor downsamples it, ms (negative when
/// it is overdue); `None` at the last resolution.
fn until_downsampling(b: &SyncedBlock) -> Option<i64> {
    let range = b.meta.max_time - b.meta.min_time;
    match b.resolution() {
        RES_RAW => Some(40 * 3_600_000 - range),
        RES_5M => Some(10 * 86_400_000 - range),
        RES_1H => None,
        _ => None,
    }
}

async fn verify(bucket: &Bucket, ids: &[Ulid], issues: &[IssueKind]) -> anyhow::Result<()> {
    let found = sync_blocks(bucket).await?;
    for id in ids {
        if !found.blocks.contains_key(id) && !found.unusable.iter().any(|(u, _)| u == id) {
            bail!("--id={id}: no such block in the bucket (no {id}/meta.json)");
        }
    }
    let wanted = |id: &Ulid| ids.is_empty() || ids.contains(id);
    let mut report = IssueReport::default();
    for (id, why) in found.unusable.iter().filter(|(id, _)| wanted(id)) {
        report.add(*id, IssueKind::IndexKnownIssues, why.clone());
    }
    let live: Vec<&BlockMeta> = found
        .blocks
        .values()
        .filter(|b| b.deletion.is_none())
        .map(|b| &b.meta)
        .collect();
    let targets: Vec<Ulid> = if ids.is_empty() {
        live.iter().map(|m| m.ulid).collect()
    } else {
        ids.iter()
            .copied()
            .filter(|id| found.blocks.contains_key(id))
            .collect()
    };
    if issues.contains(&IssueKind::IndexKnownIssues) {
        let scratch = scratch_dir("verify")?;
        let bar = progress_bar(targets.len() as u64, "verify");
        for id in &targets {
            bar.set_message(format!("{id}: downloading"));
            let dir = scratch.path().join(id.to_string());
            let block_issues = match download_block(bucket, &id.to_string(), &dir).await {
                Ok(_) => {
                    let (bar2, dir2, id2) = (bar.clone(), dir.clone(), *id);
                    let v = tokio::task::spawn_blocking(move || {
                        verify_block(&dir2, id2, |done, total| {
                            bar2.set_message(format!("{id2}: {done}/{total} series"));
                        })
                    })
                    .await
                    .context("verification task")?;
                    let mut issues = v.issues;
                    if v.unlisted > 0 {
                        issues.push(format!("… and {} more issues", v.unlisted));
                    }
                    issues
                }
                Err(e) => vec![format!("the block does not download: {e:#}")],
            };
            let _ = std::fs::remove_dir_all(&dir);
            // Files are named as the bucket names them, not by the scratch copy.
            let scratch_prefix = format!("{}/", scratch.path().display());
            bar.suspend(|| {
                for why in block_issues {
                    let why = why.replace(&scratch_prefix, "");
                    report.add(*id, IssueKind::IndexKnownIssues, why);
                }
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    // Readers skip blocks another block holds whole; only the others can overlap for them.
    let copies = redundant(live.iter().copied());
    if issues.contains(&IssueKind::OverlappedBlocks) {
        let served = live.iter().copied().filter(|m| !copies.contains(&m.ulid));
        for o in overlaps(served) {
            if !wanted(&o.first) && !wanted(&o.second) {
                continue;
            }
            let range = format!("[{}, {})", rfc3339(o.min_time), rfc3339(o.max_time));
            report.add(
                o.first,
                IssueKind::OverlappedBlocks,
                format!(
                    "overlaps block {} of the same group (external labels and resolution) over {range}",
                    o.second
                ),
            );
            report.add(
                o.second,
                IssueKind::OverlappedBlocks,
                format!(
                    "overlaps block {} of the same group (external labels and resolution) over {range}",
                    o.first
                ),
            );
        }
    }
    if issues.contains(&IssueKind::DuplicatedCompaction) {
        for id in copies.iter().filter(|id| wanted(id)) {
            let holder = holder_of(&live, &copies, *id)
                .map_or_else(|| "another block".to_string(), |h| format!("block {h}"));
            report.add(
                *id,
                IssueKind::DuplicatedCompaction,
                format!(
                    "{holder} holds every source of this block: it is a leftover of a compaction and readers skip it (the compactor marks it for deletion)"
                ),
            );
        }
    }
    let checked = if ids.is_empty() {
        live.len() + found.unusable.len()
    } else {
        ids.len()
    };
    if report.count == 0 {
        println!("verified {checked} blocks: no issues");
        return Ok(());
    }
    bail!(
        "{} {} in {} of the {checked} blocks checked",
        report.count,
        if report.count == 1 { "issue" } else { "issues" },
        report.blocks.len()
    )
}

/// Issues found by `verify`, printed as they come.
#[derive(Default)]
struct IssueReport {
    count: usize,
    blocks: std::collections::BTreeSet<Ulid>,
}

impl IssueReport {
    fn add(&mut self, id: Ulid, kind: IssueKind, why: String) {
        println!("{id}  {}  {why}", kind.name());
        self.count += 1;
        self.blocks.insert(id);
    }
}

/// A live block, not itself redundant, whose sources include all of block `id`'s.
fn holder_of(live: &[&BlockMeta], copies: &[Ulid], id: Ulid) -> Option<Ulid> {
    let m = live.iter().find(|m| m.ulid == id)?;
    let res = |m: &BlockMeta| m.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
    live.iter()
        .filter(|h| h.ulid != id && !copies.contains(&h.ulid) && res(h) == res(m))
        .find(|h| {
            m.compaction
                .sources
                .iter()
                .all(|s| h.compaction.sources.contains(s))
        })
        .map(|h| h.ulid)
}

/// The marker files `mark` writes and removes.
const MARKERS: [&str; 3] = [
    DeletionMark::FILENAME,
    NoCompactMark::FILENAME,
    NoDownsampleMark::FILENAME,
];

async fn mark(
    bucket: &Bucket,
    ids: &[Ulid],
    marker: &str,
    details: &str,
    remove: bool,
) -> anyhow::Result<()> {
    if !MARKERS.contains(&marker) {
        bail!(
            "--marker={marker:?} is not a marker: want one of {}",
            MARKERS.join(", ")
        );
    }
    for id in ids {
        if read_object(bucket, &format!("{id}/meta.json"))
            .await?
            .is_none()
        {
            bail!("--id={id}: no such block in the bucket (no {id}/meta.json); nothing was marked");
        }
    }
    let now_s = now_ms() / 1000;
    for id in ids {
        let path = format!("{id}/{marker}");
        let present = read_object(bucket, &path).await?.is_some();
        if remove {
            if present {
                bucket
                    .delete(&path)
                    .await
                    .with_context(|| format!("deleting {path}"))?;
                println!("{id}: {marker} removed");
            } else {
                println!("{id}: has no {marker}; nothing to remove");
            }
            continue;
        }
        if present {
            println!("{id}: already has {marker}; left as it is");
            continue;
        }
        let json = match marker {
            DeletionMark::FILENAME => DeletionMark::new(*id, now_s, details).to_json(),
            NoCompactMark::FILENAME => {
                NoCompactMark::new(*id, now_s, REASON_MANUAL, details).to_json()
            }
            _ => NoDownsampleMark::new(*id, now_s, REASON_MANUAL, details).to_json(),
        };
        bucket
            .put(&path, json.into())
            .await
            .with_context(|| format!("writing {path}"))?;
        println!("{id}: {marker} written");
    }
    Ok(())
}

async fn cleanup(bucket: &Bucket, delete_delay: Duration) -> anyhow::Result<()> {
    let found = sync_blocks(bucket).await?;
    let now = now_ms();
    let due = deletion_due(&found.blocks, delete_delay, now);
    let abandoned = abandoned_uploads(bucket, &found.blocks, now).await?;
    let bar = progress_bar((due.len() + abandoned.len()) as u64, "cleanup");
    for id in &due {
        bar.set_message(id.to_string());
        delete_block(bucket, &id.to_string()).await?;
        let why = found.blocks[id]
            .deletion
            .as_ref()
            .map(|d| {
                let age = go_duration((now / 1000 - d.deletion_time).saturating_mul(1000));
                if d.details.is_empty() {
                    format!("marked for deletion {age} ago")
                } else {
                    format!("marked for deletion {age} ago: {}", d.details)
                }
            })
            .unwrap_or_default();
        bar.suspend(|| println!("{id}: deleted ({why})"));
        bar.inc(1);
    }
    for dir in &abandoned {
        bar.set_message(dir.clone());
        delete_block(bucket, dir).await?;
        bar.suspend(|| {
            println!("{dir}: deleted (partial upload without meta.json, abandoned for two days)")
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "cleanup: {} blocks and {} partial uploads deleted",
        due.len(),
        abandoned.len()
    );
    Ok(())
}

async fn rewrite(
    bucket: &Bucket,
    ids: &[Ulid],
    delete: &[String],
    dry_run: bool,
) -> anyhow::Result<()> {
    let selectors: Vec<Vec<Matcher>> = delete
        .iter()
        .map(|s| parse_selector(s).with_context(|| format!("--delete-series={s:?}")))
        .collect::<anyhow::Result<_>>()?;
    let found = sync_blocks(bucket).await?;
    for id in ids {
        match found.blocks.get(id) {
            None => {
                bail!("--id={id}: no such block in the bucket (no usable {id}/meta.json)")
            }
            Some(b) if b.deletion.is_some() => bail!(
                "--id={id}: the block is marked for deletion; rewrite the block that replaced it"
            ),
            Some(_) => {}
        }
    }
    let scratch = scratch_dir("rewrite")?;
    let bar = progress_bar(ids.len() as u64, "rewrite");
    for id in ids {
        let work = scratch.path().join(id.to_string());
        let src = work.join("src");
        bar.set_message(format!("{id}: downloading"));
        download_block(bucket, &id.to_string(), &src).await?;
        bar.set_message(format!(
            "{id}: {}",
            if dry_run { "reading" } else { "writing" }
        ));
        let (id2, selectors2, bar2) = (*id, selectors.clone(), bar.clone());
        let (series, samples, meta) = tokio::task::spawn_blocking(move || {
            rewrite_local(&work, id2, &selectors2, dry_run, &bar2)
        })
        .await
        .context("rewrite task")??;
        let verb = if dry_run { "would delete" } else { "deleted" };
        if series == 0 {
            bar.suspend(|| println!("{id}: no series match; the block is left as it is"));
        } else if dry_run {
            bar.suspend(|| {
                println!(
                    "{id}: {verb} {series} series, {samples} samples (dry run: nothing written)"
                )
            });
        } else {
            let why = match &meta {
                Some(new) => {
                    bar.set_message(format!("{id}: uploading {}", new.ulid));
                    let dir = scratch.path().join(id.to_string()).join("out");
                    upload_block(
                        bucket,
                        &dir.join(new.ulid.to_string()),
                        &new.ulid.to_string(),
                    )
                    .await?;
                    format!(
                        "rewritten into {} without series matching {}",
                        new.ulid,
                        delete.join(" or ")
                    )
                }
                None => format!(
                    "every series matched {}; no block was written",
                    delete.join(" or ")
                ),
            };
            // Were this mark lost, nothing would be served twice: the new block has the
            // source's compaction sources and a newer ULID, so readers already skip the source
            // as held whole, and the compactor marks it.
            let mark = DeletionMark::new(*id, now_ms() / 1000, why.clone());
            bucket
                .put(
                    &format!("{id}/{}", DeletionMark::FILENAME),
                    mark.to_json().into(),
                )
                .await
                .with_context(|| format!("marking {id} for deletion"))?;
            bar.suspend(|| {
                println!(
                    "{id}: {why}: {verb} {series} series, {samples} samples; {id} marked for deletion"
                )
            });
        }
        let _ = std::fs::remove_dir_all(scratch.path().join(id.to_string()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Lists the series of the block in `work/src` that `selectors` select, one line each, and
/// unless `dry_run` writes the block without them into `work/out`. Returns the series and
/// samples selected and the new block's meta (`None` when none was written).
fn rewrite_local(
    work: &Path,
    id: Ulid,
    selectors: &[Vec<Matcher>],
    dry_run: bool,
    bar: &ProgressBar,
) -> anyhow::Result<(u64, u64, Option<BlockMeta>)> {
    let src = work.join("src");
    let block = Block::open(&src).with_context(|| format!("opening block {id}"))?;
    let (mut series, mut samples) = (0u64, 0u64);
    let verb = if dry_run { "would delete" } else { "deletes" };
    bar.suspend(|| {
        let mut out = std::io::stdout().lock();
        for_each_selected(&block, selectors, |s: SelectedSeries| {
            series += 1;
            samples += s.samples;
            let _ = writeln!(
                out,
                "{id}: {verb} {} ({} samples, {} chunks)",
                s.labels, s.samples, s.chunks
            );
        })
    })?;
    drop(block);
    if dry_run || series == 0 {
        return Ok((series, samples, None));
    }
    let out = work.join("out");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let (meta, _) = delete_series(&src, &out, selectors, None)
        .with_context(|| format!("rewriting block {id}"))?;
    Ok((series, samples, meta))
}

/// A scratch directory under the system's temporary directory, removed when dropped.
/// `bucket convert --to=parquet`: each block downloaded, converted locally and its shards
/// uploaded into its directory.
async fn convert_parquet(
    bucket: &Bucket,
    ids: &[Ulid],
    opts: &gauntlet_engine::parquet::write::ConvertOptions,
    delete_tsdb: bool,
) -> anyhow::Result<()> {
    let found = sync_blocks(bucket).await?;
    let mut todo = Vec::new();
    if ids.is_empty() {
        for (id, b) in &found.blocks {
            let done = has_parquet(bucket, *id).await?;
            if b.deletion.is_none() && b.resolution() == 0 && !done {
                todo.push(*id);
            }
        }
    } else {
        for id in ids {
            match found.blocks.get(id) {
                None => bail!("--id={id}: no such block in the bucket (no usable {id}/meta.json)"),
                Some(b) if b.resolution() != 0 => bail!(
                    "--id={id}: a downsampled block (resolution {} ms) has aggregate chunks, which Parquet shards do not hold",
                    b.resolution()
                ),
                Some(_) => todo.push(*id),
            }
        }
    }
    todo.sort();
    let scratch = scratch_dir("convert")?;
    let bar = progress_bar(todo.len() as u64, "convert");
    for id in todo {
        bar.set_message(format!("{id}: converting"));
        let report = convert_to_parquet(bucket, id, scratch.path(), opts, delete_tsdb).await?;
        bar.suspend(|| {
            println!(
                "{id}: {} series in {} shard(s), {} row groups, {} bytes{}",
                report.series,
                report.shards,
                report.row_groups,
                report.bytes,
                if delete_tsdb {
                    "; TSDB index and chunks deleted"
                } else {
                    ""
                }
            )
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn scratch_dir(what: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("gauntlet-{what}-"))
        .tempdir()
        .context("creating a scratch directory")
}

/// Prints rows under a header in columns two spaces apart.
fn print_table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < widths.len() {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(c);
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for r in rows {
        line(out, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

/// External labels as `name="value"` pairs joined by commas; `-` when there are none.
fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A time in ms since the epoch as RFC 3339 in UTC, with milliseconds when it has them; the
/// plain number outside years 1970 to 9999.
fn rfc3339(ms: i64) -> String {
    if !(0..253_402_300_800_000).contains(&ms) {
        return format!("{ms}ms");
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// A span in ms as Go prints a `time.Duration` (`2h0m0s`, `5m0s`, `1h59m45.001s`, `0s`), the
/// form Thanos's tools print.
fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    if a < 1000 {
        return format!("{sign}{a}ms");
    }
    let (h, m, s, frac) = (a / 3_600_000, a / 60_000 % 60, a / 1000 % 60, a % 1000);
    let secs = if frac == 0 {
        s.to_string()
    } else {
        format!("{s}.{frac:03}").trim_end_matches('0').to_string()
    };
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(7_200_000), "2h0m0s");
        assert_eq!(go_duration(300_000), "5m0s");
        assert_eq!(go_duration(7_185_001), "1h59m45.001s");
        assert_eq!(go_duration(1_500), "1.5s");
        assert_eq!(go_duration(250), "250ms");
        assert_eq!(go_duration(-3_600_000), "-1h0m0s");
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(1_735_689_600_000), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600_001), "2025-01-01T00:00:00.001Z");
        assert_eq!(rfc3339(-5), "-5ms");
    }
}
