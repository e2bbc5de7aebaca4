//! `gauntlet compact`: Thanos's compactor over a bucket. Each pass syncs the blocks' metas,
//! marks blocks whose data another block holds whole, compacts every group (same external
//! labels without the replica labels, same resolution) as the planner says until nothing is
//! left to do, downsamples, applies retention, and deletes blocks marked longer ago than the
//! delete delay. A new block is uploaded whole (meta.json last) before its sources are marked,
//! so a kill at any moment leaves either the sources or a block that holds all of them, which
//! the next pass finds and finishes.

use crate::now_ms;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use gauntlet_engine::block::{BlockMeta, DeletionMark, NoCompactMark, ThanosMeta};
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::compact::plan::THANOS_RANGES_MS;
use gauntlet_engine::compact::{
    Dedup, MergeOptions, PlanBlock, Planned, group_key, merge_blocks, plan_batch, redundant,
};
use gauntlet_engine::downsample::{RES_1H, RES_5M, RES_RAW, downsample_block_with};
use gauntlet_engine::index::writer::MAX_INDEX_SIZE;
use ulid::Ulid;

use crate::blocks::{
    SyncedBlock, abandoned_uploads, delete_block, deletion_due, download_block, sync_blocks,
    upload_block,
};
use crate::compact_progress::{LastPass, Phase, Progress, downsample_due, past_retention, todo};
use crate::http::ops;

/// Flags of `gauntlet compact`, named as Thanos names them.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Where the bucket is.
    #[command(flatten)]
    pub objstore: crate::store::ObjstoreArgs,
    /// Local scratch directory for blocks being compacted or downsampled.
    #[arg(long = "data-dir", default_value = "./compact")]
    pub data_dir: PathBuf,
    /// Address /metrics, /-/ready and /-/healthy listen on.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// The HTTP server's web configuration file (TLS, basic auth).
    #[command(flatten)]
    pub http_config: crate::http::webconfig::HttpConfigArgs,
    /// Keep running, a pass every `--wait-interval`; without it one pass, then exit (non-zero
    /// when a group halted or a step failed).
    #[arg(long = "wait", short = 'w')]
    pub wait: bool,
    /// Time between passes with `--wait`.
    #[arg(long = "wait-interval", default_value = "5m", value_parser = humantime::parse_duration)]
    pub wait_interval: Duration,
    /// Groups compacted at once, each merge on a core of its own (and each with its own
    /// memory budget: read window and postings spool).
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    pub concurrency: usize,
    /// External labels that tell replicas apart: ignored when grouping, so that replicas'
    /// blocks are merged (and deduplicated) into one. Repeatable.
    #[arg(long = "deduplication.replica-label")]
    pub replica_labels: Vec<String>,
    /// How overlapping samples of replicas are joined: "" (equal timestamps once) or
    /// `penalty` (Thanos's penalty algorithm, for HA Prometheus pairs).
    #[arg(long = "deduplication.func", default_value = "")]
    pub dedup_func: String,
    /// Merge blocks that overlap in time (implied by `--deduplication.replica-label`);
    /// without it an overlap halts the group.
    #[arg(long = "compact.enable-vertical-compaction")]
    pub vertical: bool,
    /// How long raw blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-raw", default_value = "0d", value_parser = humantime::parse_duration)]
    pub retention_raw: Duration,
    /// How long 5m blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-5m", default_value = "0d", value_parser = humantime::parse_duration)]
    pub retention_5m: Duration,
    /// How long 1h blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-1h", default_value = "0d", value_parser = humantime::parse_duration)]
    pub retention_1h: Duration,
    /// Time between a block's deletion mark and its deletion (readers stop using it first).
    #[arg(long = "delete-delay", default_value = "48h", value_parser = humantime::parse_duration)]
    pub delete_delay: Duration,
    /// Do not downsample.
    #[arg(long = "downsampling.disable")]
    pub downsampling_disable: bool,
    /// Accepted for Thanos compatibility, so that its command lines run unchanged: blocks are
    /// downsampled one at a time, each block's series on every core (one core when a share
    /// of a CPU is set, as in `gauntlet all`).
    #[arg(long = "downsample.concurrency", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub downsample_concurrency: u64,
    /// Blocks younger than this (by upload time, else ULID time) are left alone: their upload
    /// may still be settling. Blocks the compactor made are exempt.
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = humantime::parse_duration)]
    pub consistency_delay: Duration,
    /// After compaction and downsampling, convert raw blocks (not marked for deletion, not
    /// converted yet, spanning at least `--parquet.min-block-duration`) to Parquet shards in
    /// their directories (docs/formats/parquet.md).
    #[arg(long = "parquet")]
    pub parquet: bool,
    /// Shortest block the Parquet step converts: with 2 days, only blocks compacted that far
    /// (the 2 h blocks they replace would only be deleted).
    #[arg(long = "parquet.min-block-duration", default_value = "0s", value_parser = humantime::parse_duration)]
    pub parquet_min_duration: Duration,
    /// Delete a converted block's TSDB index and chunks once its shards are uploaded
    /// (stores then serve it from Parquet); without it both forms are kept.
    #[arg(long = "parquet.delete-tsdb")]
    pub parquet_delete_tsdb: bool,
    /// Highest compaction level (4: blocks of up to 14 days).
    #[arg(long = "debug.max-compaction-level", default_value_t = 4)]
    pub max_level: usize,
}

/// Counters and gauges of the compactor, named as Thanos's where the meaning is the same.
#[derive(Debug, Default)]
pub struct CompactMetrics {
    /// Passes finished.
    pub iterations: AtomicU64,
    /// Passes that failed or halted a group.
    pub pass_failures: AtomicU64,
    /// Compactions done.
    pub compactions: AtomicU64,
    /// Compactions that failed.
    pub compaction_failures: AtomicU64,
    /// Groups halted in the last pass (overlaps not allowed, corrupt blocks).
    pub halted_groups: AtomicU64,
    /// Blocks downsampled.
    pub downsamples: AtomicU64,
    /// Blocks converted to Parquet shards.
    pub parquet_conversions: AtomicU64,
    /// Downsamplings that failed.
    pub downsample_failures: AtomicU64,
    /// Deletion marks written.
    pub marked_for_deletion: AtomicU64,
    /// No-compact marks written.
    pub marked_no_compact: AtomicU64,
    /// Blocks deleted.
    pub deleted: AtomicU64,
    /// Partial uploads removed.
    pub partial_removed: AtomicU64,
    /// Blocks seen by the last sync.
    pub blocks: AtomicU64,
    /// 1 while a pass runs.
    pub busy: AtomicU64,
    /// Unix seconds of the last finished pass.
    pub last_pass: AtomicU64,
    /// Samples written by compactions.
    pub samples: AtomicU64,
    /// Time spent merging (not downloading or uploading), µs.
    pub merge_micros: AtomicU64,
    /// What the pass is doing and has left to do, for the status page.
    pub progress: std::sync::Mutex<Progress>,
}

impl CompactMetrics {
    /// Changes the progress under its lock.
    pub fn progress(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(&mut p);
        }
    }

    /// A copy of the progress.
    pub fn progress_now(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// The settings one pass works with.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// Local scratch directory.
    pub data_dir: PathBuf,
    /// Replica labels dropped when grouping.
    pub replica_labels: Vec<String>,
    /// How overlapping samples are joined.
    pub dedup: Dedup,
    /// Whether overlapping blocks may be merged.
    pub vertical: bool,
    /// Retention of raw, 5m and 1h blocks; zero keeps forever.
    pub retention: [Duration; 3],
    /// Time between a deletion mark and the deletion.
    pub delete_delay: Duration,
    /// Whether to downsample.
    pub downsampling: bool,
    /// New blocks younger than this are left alone.
    pub consistency_delay: Duration,
    /// Compaction ranges (ms) up to the highest level.
    pub ranges: Vec<i64>,
    /// Share of one CPU a merge may use (`gauntlet all` leaves the rest to queries); `None`
    /// runs flat out.
    pub cpu_share: Option<f64>,
    /// Groups compacted at once.
    pub concurrency: usize,
    /// Largest sum of input index sizes a compaction takes on (Thanos's 64 GiB).
    pub max_index_bytes: u64,
    /// The Parquet step, when it runs (`--parquet`).
    pub parquet: Option<ParquetStep>,
}

/// What the compactor's Parquet step converts, and how.
#[derive(Debug, Clone)]
pub struct ParquetStep {
    /// Shortest block converted, ms.
    pub min_duration_ms: i64,
    /// Delete a converted block's TSDB files.
    pub delete_tsdb: bool,
}

impl CompactConfig {
    /// The settings the flags give.
    pub fn from_args(a: &CompactArgs) -> anyhow::Result<Self> {
        let dedup = match a.dedup_func.as_str() {
            "" => Dedup::Chain,
            "penalty" => Dedup::Penalty,
            f => anyhow::bail!("--deduplication.func={f:?}: want \"\" or \"penalty\""),
        };
        if a.max_level == 0 || a.max_level >= THANOS_RANGES_MS.len() {
            anyhow::bail!(
                "--debug.max-compaction-level={}: want 1 to {}",
                a.max_level,
                THANOS_RANGES_MS.len() - 1
            );
        }
        Ok(CompactConfig {
            data_dir: a.data_dir.clone(),
            replica_labels: a.replica_labels.clone(),
            dedup,
            vertical: a.vertical || !a.replica_labels.is_empty(),
            retention: [a.retention_raw, a.retention_5m, a.retention_1h],
            delete_delay: a.delete_delay,
            downsampling: !a.downsampling_disable,
            consistency_delay: a.consistency_delay,
            ranges: THANOS_RANGES_MS[..=a.max_level].to_vec(),
            cpu_share: None,
            concurrency: a.concurrency.max(1),
            max_index_bytes: MAX_INDEX_SIZE,
            parquet: a.parquet.then_some(ParquetStep {
                min_duration_ms: a.parquet_min_duration.as_millis() as i64,
                delete_tsdb: a.parquet_delete_tsdb,
            }),
        })
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// New blocks made by compaction.
    pub compacted: Vec<Ulid>,
    /// New blocks made by downsampling.
    pub downsampled: Vec<Ulid>,
    /// Blocks given a deletion mark.
    pub marked: Vec<Ulid>,
    /// Blocks deleted.
    pub deleted: Vec<Ulid>,
    /// Blocks converted to Parquet shards.
    pub converted: Vec<Ulid>,
    /// Groups halted, with why.
    pub halted: Vec<(String, String)>,
    /// Steps that failed and will be retried next pass.
    pub failures: Vec<String>,
}

impl PassReport {
    /// Adds what another part of the pass did.
    fn absorb(&mut self, other: PassReport) {
        self.compacted.extend(other.compacted);
        self.downsampled.extend(other.downsampled);
        self.marked.extend(other.marked);
        self.deleted.extend(other.deleted);
        self.converted.extend(other.converted);
        self.halted.extend(other.halted);
        self.failures.extend(other.failures);
    }

    /// Whether a one-shot run should exit non-zero.
    pub fn failed(&self) -> bool {
        !self.halted.is_empty() || !self.failures.is_empty()
    }
}

/// Runs the compactor: one pass, or with `--wait` a pass every interval until SIGTERM.
pub fn run(args: CompactArgs, budget: Arc<MemoryBudget>) -> anyhow::Result<()> {
    let cfg = args.objstore.bucket_config()?;
    let compact = CompactConfig::from_args(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-compact")
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(args, cfg, compact, budget))
}

async fn serve(
    args: CompactArgs,
    cfg: BucketConfig,
    compact: CompactConfig,
    budget: Arc<MemoryBudget>,
) -> anyhow::Result<()> {
    let web = args.http_config.load()?;
    let bucket = Bucket::open(&cfg)?;
    let metrics = Arc::new(CompactMetrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let http_listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("binding --http-address {}", args.http_address))?;
    tracing::info!(bucket = %cfg.describe(), data_dir = %compact.data_dir.display(), http = %http_listener.local_addr()?, wait = args.wait, "compactor starting");
    let mut registry = crate::metrics::Registry::default();
    let server_metrics = crate::metrics::register_common(&mut registry, budget);
    register_metrics(&mut registry, metrics.clone(), true);
    let app = ops::router(Arc::new(|| true), Arc::new(registry))
        .merge(crate::http::status::compactor_router(metrics.clone()));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        crate::http::serve_on(http_listener, app, &web, &server_metrics, async {
            let _ = http_stop_rx.await;
        })
        .await
    });
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        crate::http::shutdown_signal().await;
        tracing::info!("stopping: the current step finishes, nothing new starts");
        signal_stop.store(true, Relaxed);
    });

    let mut failed;
    loop {
        let report = run_pass(&bucket, &compact, &metrics, &stop).await;
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                metrics.pass_failures.fetch_add(1, Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "compaction pass failed");
                PassReport {
                    failures: vec![format!("{e:#}")],
                    ..Default::default()
                }
            }
        };
        failed = report.failed();
        if !args.wait || stop.load(Relaxed) {
            break;
        }
        let deadline = tokio::time::Instant::now() + args.wait_interval;
        while tokio::time::Instant::now() < deadline && !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(200).min(args.wait_interval)).await;
        }
        if stop.load(Relaxed) {
            break;
        }
    }
    let _ = http_stop_tx.send(());
    let _ = http.await;
    tracing::info!("compactor stopped");
    if failed && !args.wait {
        anyhow::bail!("the compaction pass halted a group or failed a step (see the log above)");
    }
    Ok(())
}

/// One pass over the bucket.
pub async fn run_pass(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    stop: &AtomicBool,
) -> anyhow::Result<PassReport> {
    m.busy.store(1, Relaxed);
    let started = now_ms();
    m.progress(|p| {
        p.phase = Phase::Syncing;
        p.started_ms = started;
        p.groups_total = 0;
        p.groups_done = 0;
    });
    let r = pass(bucket, cfg, m, stop).await;
    m.progress(|p| {
        p.phase = Phase::Idle;
        p.started_ms = 0;
        p.merging.clear();
        p.downsampling = None;
        p.last = Some(LastPass {
            started_ms: started,
            finished_ms: now_ms(),
            report: r.as_ref().ok().cloned(),
            error: r.as_ref().err().map(|e| format!("{e:#}")),
        });
    });
    m.busy.store(0, Relaxed);
    m.iterations.fetch_add(1, Relaxed);
    m.last_pass.store((now_ms() / 1000) as u64, Relaxed);
    if let Ok(rep) = &r {
        m.halted_groups.store(rep.halted.len() as u64, Relaxed);
        if rep.failed() {
            m.pass_failures.fetch_add(1, Relaxed);
        }
        tracing::info!(
            compacted = rep.compacted.len(),
            downsampled = rep.downsampled.len(),
            marked = rep.marked.len(),
            deleted = rep.deleted.len(),
            halted = rep.halted.len(),
            failures = rep.failures.len(),
            "compaction pass done"
        );
    }
    r
}

async fn pass(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    stop: &AtomicBool,
) -> anyhow::Result<PassReport> {
    let mut rep = PassReport::default();
    // Scratch left by a run that was killed is of no use: each step downloads afresh.
    for scratch in ["compact", "downsample"] {
        let dir = cfg.data_dir.join(scratch);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating --data-dir {}", cfg.data_dir.display()))?;
    let mut blocks = sync(bucket, m).await?;
    tracing::info!(blocks = blocks.len(), "bucket synced");

    // Blocks whose sources another block of their resolution holds whole (a compaction
    // uploaded its block and was stopped before marking its sources) are marked now.
    let live = blocks
        .values()
        .filter(|b| b.deletion.is_none())
        .map(|b| &b.meta);
    for id in redundant(live.collect::<Vec<_>>()) {
        mark_deleted(
            bucket,
            &mut blocks,
            id,
            "its data is in a block with all of its sources",
            m,
            &mut rep,
        )
        .await?;
    }

    plan_todo(&blocks, cfg, m, Phase::Compacting);
    compact_groups(bucket, cfg, m, stop, &mut blocks, &mut rep).await;
    if cfg.downsampling && !stop.load(Relaxed) {
        plan_todo(&blocks, cfg, m, Phase::Downsampling);
        downsample(bucket, cfg, m, stop, &mut blocks, &mut rep).await;
    }
    if let Some(step) = cfg.parquet.as_ref().filter(|_| !stop.load(Relaxed)) {
        to_parquet(bucket, cfg, step, m, stop, &blocks, &mut rep).await;
    }
    if !stop.load(Relaxed) {
        plan_todo(&blocks, cfg, m, Phase::Cleaning);
        retention(bucket, cfg, m, &mut blocks, &mut rep).await?;
        clean(bucket, cfg, m, &blocks, &mut rep).await?;
    }
    plan_todo(&blocks, cfg, m, Phase::Cleaning);
    Ok(rep)
}

/// The Parquet step: every raw block not marked for deletion, not converted yet and at least
/// `step.min_duration_ms` long, converted one at a time. A block that fails is reported and
/// retried next pass.
async fn to_parquet(
    bucket: &Bucket,
    cfg: &CompactConfig,
    step: &ParquetStep,
    m: &CompactMetrics,
    stop: &AtomicBool,
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    rep: &mut PassReport,
) {
    let scratch = cfg.data_dir.join("parquet");
    let opts = gauntlet_engine::parquet::write::ConvertOptions::default();
    for (id, b) in blocks {
        if stop.load(Relaxed) {
            return;
        }
        if b.deletion.is_some()
            || b.resolution() != 0
            || b.meta.max_time - b.meta.min_time < step.min_duration_ms
        {
            continue;
        }
        match crate::blocks::has_parquet(bucket, *id).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                rep.failures.push(format!("{e:#}"));
                continue;
            }
        }
        tracing::info!(block = %id, "converting to Parquet");
        match crate::blocks::convert_to_parquet(bucket, *id, &scratch, &opts, step.delete_tsdb)
            .await
        {
            Ok(r) => {
                tracing::info!(block = %id, series = r.series, shards = r.shards, bytes = r.bytes, "converted to Parquet");
                m.parquet_conversions.fetch_add(1, Relaxed);
                rep.converted.push(*id);
            }
            Err(e) => {
                tracing::warn!(block = %id, error = %format!("{e:#}"), "Parquet conversion failed");
                rep.failures
                    .push(format!("converting {id} to Parquet: {e:#}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Reads every block's meta.json and markers. Directories without meta.json are partial
/// uploads (left to [`clean`]); a meta.json that does not parse is reported and skipped.
/// Enters `phase` with the work left over `blocks` planned afresh.
fn plan_todo(
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    phase: Phase,
) {
    let now = now_ms();
    let left = todo(blocks, cfg, now);
    m.progress(|p| {
        p.phase = phase;
        p.todo = left;
        p.todo_at_ms = now;
    });
}

async fn sync(bucket: &Bucket, m: &CompactMetrics) -> anyhow::Result<BTreeMap<Ulid, SyncedBlock>> {
    let found = sync_blocks(bucket).await?;
    for (id, why) in &found.unusable {
        tracing::warn!(block = %id, "block skipped: {why}");
    }
    m.blocks.store(found.blocks.len() as u64, Relaxed);
    Ok(found.blocks)
}

async fn mark_deleted(
    bucket: &Bucket,
    blocks: &mut BTreeMap<Ulid, SyncedBlock>,
    id: Ulid,
    why: &str,
    m: &CompactMetrics,
    rep: &mut PassReport,
) -> anyhow::Result<()> {
    let mark = DeletionMark::new(id, now_ms() / 1000, why);
    bucket
        .put(&format!("{id}/deletion-mark.json"), mark.to_json().into())
        .await
        .with_context(|| format!("marking {id} for deletion"))?;
    tracing::info!(block = %id, reason = why, "block marked for deletion");
    m.marked_for_deletion.fetch_add(1, Relaxed);
    rep.marked.push(id);
    if let Some(b) = blocks.get_mut(&id) {
        b.deletion = Some(mark);
    }
    Ok(())
}

/// Compacts each group until its planner has nothing left, `--compact.concurrency` groups at
/// once. Each group works on its own blocks; what it made and marked is folded back in after.
async fn compact_groups(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    stop: &AtomicBool,
    blocks: &mut BTreeMap<Ulid, SyncedBlock>,
    rep: &mut PassReport,
) {
    use futures::StreamExt;
    let now = now_ms();
    let mut groups: BTreeMap<String, BTreeMap<Ulid, SyncedBlock>> = BTreeMap::new();
    for b in blocks.values() {
        if b.deletion.is_some() || !settled(b, cfg, now) {
            continue;
        }
        let key = group_key(&b.labels(), b.resolution(), &cfg.replica_labels);
        groups
            .entry(key)
            .or_default()
            .insert(b.meta.ulid, b.clone());
    }
    m.progress(|p| p.groups_total = groups.len());
    let mut done = futures::stream::iter(groups)
        .map(|(key, group)| async move {
            let mut group = group;
            let mut rep = PassReport::default();
            compact_group(bucket, cfg, m, stop, &key, &mut group, &mut rep).await;
            m.progress(|p| p.groups_done += 1);
            (group, rep)
        })
        .buffer_unordered(cfg.concurrency.max(1));
    while let Some((group, r)) = done.next().await {
        blocks.extend(group);
        rep.absorb(r);
    }
}

/// Compacts one group (`blocks` holds its blocks) until its planner has nothing left. Plans
/// that do not read one another's outputs (the replicas of each 2h window, say) are merged
/// at once, one per core; the blocks made are the ones a merge at a time would make.
async fn compact_group(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    stop: &AtomicBool,
    key: &str,
    blocks: &mut BTreeMap<Ulid, SyncedBlock>,
    rep: &mut PassReport,
) {
    let key = key.to_string();
    let mut ids: Vec<Ulid> = blocks.keys().copied().collect();
    let at_once = threads(cfg);
    loop {
        if stop.load(Relaxed) {
            return;
        }
        let plan_blocks: Vec<PlanBlock> = ids
            .iter()
            .filter_map(|id| blocks.get(id))
            .map(|b| PlanBlock::from_meta(&b.meta, b.no_compact))
            .collect();
        let mut batch = plan_batch(&plan_blocks, &cfg.ranges, at_once);
        let Some(planned) = batch.first() else {
            break;
        };
        let inputs = planned.blocks();
        let resolution = blocks
            .get(&inputs[0])
            .map_or(RES_RAW, SyncedBlock::resolution);
        if let Planned::Overlapping(_) = planned {
            if resolution != RES_RAW {
                // Aggregates cannot be merged sample by sample: keep these blocks out.
                for id in &inputs {
                    if let Err(e) = mark_no_compact(bucket, *id, m).await {
                        rep.failures.push(format!("{e:#}"));
                    }
                    if let Some(b) = blocks.get_mut(id) {
                        b.no_compact = true;
                    }
                }
                continue;
            }
            if !cfg.vertical {
                let why = format!(
                    "blocks {} overlap in time; merging them needs --compact.enable-vertical-compaction (or --deduplication.replica-label for replicas)",
                    inputs
                        .iter()
                        .map(Ulid::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                tracing::error!(group = %key, "group halted: {why}");
                rep.halted.push((key.clone(), why));
                break;
            }
        }
        if let Some((big, total)) = index_too_large(blocks, &inputs, cfg.max_index_bytes) {
            let details = format!(
                "the planned blocks' indexes add up to {total} bytes, over the {} byte limit",
                cfg.max_index_bytes
            );
            if let Err(e) = mark_no_compact_for(
                bucket,
                big,
                gauntlet_engine::block::markers::REASON_INDEX_SIZE_EXCEEDING,
                &details,
                m,
            )
            .await
            {
                rep.failures.push(format!("{e:#}"));
                break;
            }
            if let Some(b) = blocks.get_mut(&big) {
                b.no_compact = true;
            }
            continue;
        }
        let dedup = match planned {
            Planned::Overlapping(_) => cfg.dedup,
            _ => Dedup::Chain,
        };
        // Later plans of the batch wait for the next round when their indexes are too large:
        // the checks above run on them then.
        if let Some(cut) = batch
            .iter()
            .position(|p| index_too_large(blocks, &p.blocks(), cfg.max_index_bytes).is_some())
        {
            batch.truncate(cut.max(1));
        }
        let plans: Vec<Vec<Ulid>> = batch.iter().map(Planned::blocks).collect();
        m.progress(|p| {
            p.merging
                .extend(plans.iter().map(|inputs| (key.clone(), inputs.clone())))
        });
        let merged = futures::future::join_all(
            plans
                .iter()
                .map(|inputs| compact_one(bucket, cfg, &key, blocks, inputs, dedup, m)),
        )
        .await;
        m.progress(|p| p.merging.retain(|(k, _)| *k != key));
        let mut failed = false;
        for (inputs, merged) in plans.iter().zip(merged) {
            failed |= !settle_merge(bucket, m, &key, blocks, &mut ids, inputs, merged, rep).await;
        }
        if failed {
            break;
        }
    }
}

/// Threads a compaction step spreads over (merges of one group at once, a block's series
/// downsampled): one per core, or one when the compactor has a share of a CPU
/// (`gauntlet all`).
fn threads(cfg: &CompactConfig) -> usize {
    match cfg.cpu_share {
        Some(_) => 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Records what a merge of `inputs` came to: its block added and its inputs marked for
/// deletion, or the failure. Returns false when the group must stop for this pass.
#[allow(clippy::too_many_arguments)]
async fn settle_merge(
    bucket: &Bucket,
    m: &CompactMetrics,
    key: &str,
    blocks: &mut BTreeMap<Ulid, SyncedBlock>,
    ids: &mut Vec<Ulid>,
    inputs: &[Ulid],
    merged: anyhow::Result<Option<BlockMeta>>,
    rep: &mut PassReport,
) -> bool {
    let (new, reason) = match merged {
        Ok(Some(meta)) => {
            m.compactions.fetch_add(1, Relaxed);
            m.samples.fetch_add(meta.stats.num_samples, Relaxed);
            let new = meta.ulid;
            tracing::info!(group = %key, block = %new, sources = inputs.len(), level = meta.compaction.level, min_time = meta.min_time, max_time = meta.max_time, samples = meta.stats.num_samples, "compacted");
            rep.compacted.push(new);
            blocks.insert(
                new,
                SyncedBlock {
                    meta,
                    deletion: None,
                    no_compact: false,
                    no_downsample: false,
                },
            );
            (Some(new), format!("compacted into {new}"))
        }
        // Every series was deleted: the sources go without a successor.
        Ok(None) => (None, "all of its series were deleted".to_string()),
        Err(e) => {
            m.compaction_failures.fetch_add(1, Relaxed);
            let why = format!("{e:#}");
            if is_data_error(&e) {
                tracing::error!(group = %key, error = %why, "group halted: a block cannot be read");
                rep.halted.push((key.to_string(), why));
            } else {
                tracing::warn!(group = %key, error = %why, "compaction failed; retrying next pass");
                rep.failures.push(why);
            }
            return false;
        }
    };
    ids.retain(|id| !inputs.contains(id));
    ids.extend(new);
    for id in inputs {
        if let Err(e) = mark_deleted(bucket, blocks, *id, &reason, m, rep).await {
            rep.failures.push(format!("{e:#}"));
        }
    }
    true
}

/// Whether a block's upload has settled: older than the consistency delay (by upload time,
/// else ULID time), or made by a compactor.
pub(crate) fn settled(b: &SyncedBlock, cfg: &CompactConfig, now: i64) -> bool {
    let t = b.meta.thanos.as_ref();
    if t.is_some_and(|t| t.source == "compactor") {
        return true;
    }
    let born = t
        .and_then(|t| t.upload_time.as_deref())
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
        .map_or(b.meta.ulid.timestamp_ms() as i64, |d| d.as_millis() as i64);
    now - born >= cfg.consistency_delay.as_millis() as i64
}

/// Whether an error comes from a block's own bytes (corrupt, truncated, unmergeable) rather
/// than from the bucket or the disk.
fn is_data_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<gauntlet_engine::Error>()
            .is_some_and(|e| !matches!(e, gauntlet_engine::Error::Io { .. }))
    })
}

async fn mark_no_compact(bucket: &Bucket, id: Ulid, m: &CompactMetrics) -> anyhow::Result<()> {
    mark_no_compact_for(
        bucket,
        id,
        gauntlet_engine::block::markers::REASON_DOWNSAMPLE_VERTICAL_COMPACTION,
        "downsampled blocks overlap; their aggregates cannot be merged",
        m,
    )
    .await
}

async fn mark_no_compact_for(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
    m: &CompactMetrics,
) -> anyhow::Result<()> {
    let mark = NoCompactMark::new(id, now_ms() / 1000, reason, details);
    bucket
        .put(&format!("{id}/no-compact-mark.json"), mark.to_json().into())
        .await
        .with_context(|| format!("marking {id} no-compact"))?;
    m.marked_no_compact.fetch_add(1, Relaxed);
    tracing::warn!(block = %id, reason, "{details}; marked no-compact");
    Ok(())
}

/// Thanos's guard on index size: when the planned blocks' indexes add up to `limit` bytes or
/// more, their merged index could not be written (refs are 32-bit offsets / 16), so the block
/// with the largest index is taken out of compaction. Sizes come from each meta.json's file
/// list; a block without one counts as 0, as it does for Thanos when the size is unknown.
fn index_too_large(
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    inputs: &[Ulid],
    limit: u64,
) -> Option<(Ulid, u64)> {
    let size = |id: &Ulid| -> u64 {
        blocks
            .get(id)
            .and_then(|b| b.meta.thanos.as_ref())
            .and_then(|t| t.files.iter().find(|f| f.rel_path == "index"))
            .map_or(0, |f| f.size_bytes.max(0) as u64)
    };
    if inputs.len() < 2 {
        return None;
    }
    let total: u64 = inputs.iter().map(size).sum();
    if total < limit {
        return None;
    }
    inputs
        .iter()
        .max_by_key(|id| (size(id), **id))
        .map(|id| (*id, total))
}

/// Downloads `inputs`, merges them and uploads the result; returns its meta (`None` when
/// every series was deleted). The scratch directory is removed either way.
async fn compact_one(
    bucket: &Bucket,
    cfg: &CompactConfig,
    key: &str,
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    inputs: &[Ulid],
    dedup: Dedup,
    m: &CompactMetrics,
) -> anyhow::Result<Option<BlockMeta>> {
    // Merges of one group may run at once: each works in a directory named by its first
    // input too.
    let work = cfg.data_dir.join("compact").join(format!(
        "{}-{}",
        key.replace(['@', '/'], "-"),
        inputs[0]
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = async {
        let mut dirs = Vec::new();
        for id in inputs {
            let dir = work.join(id.to_string());
            download_block(bucket, &id.to_string(), &dir).await?;
            dirs.push(dir);
        }
        let first = &blocks[&inputs[0]];
        let mut labels = first.labels();
        labels.retain(|k, _| !cfg.replica_labels.contains(k));
        let thanos = ThanosMeta {
            version: 1,
            labels,
            downsample: gauntlet_engine::block::meta::ThanosDownsample {
                resolution: first.resolution(),
            },
            source: "compactor".into(),
            ..ThanosMeta::default()
        };
        let opts = MergeOptions {
            dedup,
            thanos: Some(thanos),
            cpu_share: cfg.cpu_share,
            ..MergeOptions::default()
        };
        let out = work.join("out");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let out2 = out.clone();
        let t0 = std::time::Instant::now();
        let merged = tokio::task::spawn_blocking(move || merge_blocks(&dirs, &out2, &opts))
            .await
            .context("merge task")?;
        let took = t0.elapsed();
        m.merge_micros.fetch_add(took.as_micros() as u64, Relaxed);
        let (meta, stats) = merged?;
        tracing::info!(group = %key, inputs = inputs.len(), samples = stats.samples, chunks_copied = stats.chunks_copied, series_rewritten = stats.series_rewritten, seconds = took.as_secs_f64(), "merged");
        if let Some(meta) = &meta {
            let id = meta.ulid.to_string();
            upload_block(bucket, &out.join(&id), &id).await?;
        }
        anyhow::Ok(meta)
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Downsamples raw blocks spanning 40h or more to 5m and 5m blocks spanning 10 days or more
/// to 1h, unless a block of the target resolution already holds all their sources.
async fn downsample(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    stop: &AtomicBool,
    blocks: &mut BTreeMap<Ulid, SyncedBlock>,
    rep: &mut PassReport,
) {
    for (from, to) in [(RES_RAW, RES_5M), (RES_5M, RES_1H)] {
        for id in downsample_due(blocks, from, to) {
            if stop.load(Relaxed) {
                return;
            }
            m.progress(|p| p.downsampling = Some(id));
            let made = downsample_one(bucket, cfg, id, to).await;
            m.progress(|p| {
                p.downsampling = None;
                p.todo.downsample_blocks.remove(&id);
            });
            match made {
                Ok(meta) => {
                    m.downsamples.fetch_add(1, Relaxed);
                    tracing::info!(block = %id, new = %meta.ulid, resolution = to, "downsampled");
                    rep.downsampled.push(meta.ulid);
                    blocks.insert(
                        meta.ulid,
                        SyncedBlock {
                            meta,
                            deletion: None,
                            no_compact: false,
                            no_downsample: false,
                        },
                    );
                }
                Err(e) => {
                    m.downsample_failures.fetch_add(1, Relaxed);
                    let why = format!("downsampling {id}: {e:#}");
                    tracing::warn!("{why}");
                    rep.failures.push(why);
                }
            }
        }
    }
}

async fn downsample_one(
    bucket: &Bucket,
    cfg: &CompactConfig,
    id: Ulid,
    to: i64,
) -> anyhow::Result<BlockMeta> {
    let work = cfg.data_dir.join("downsample").join(id.to_string());
    let _ = std::fs::remove_dir_all(&work);
    let result = async {
        let src = work.join("src");
        download_block(bucket, &id.to_string(), &src).await?;
        let out = work.join("out");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let out2 = out.clone();
        let threads = threads(cfg);
        let stats = tokio::task::spawn_blocking(move || {
            downsample_block_with(&src, &out2, to, threads, &|_, _| {})
        })
        .await
        .context("downsample task")??;
        let new = stats.meta.ulid.to_string();
        upload_block(bucket, &stats.dir, &new).await?;
        anyhow::Ok(stats.meta)
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Marks blocks past their resolution's retention.
async fn retention(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    blocks: &mut BTreeMap<Ulid, SyncedBlock>,
    rep: &mut PassReport,
) -> anyhow::Result<()> {
    for id in past_retention(blocks, &cfg.retention, now_ms()) {
        mark_deleted(bucket, blocks, id, "past retention", m, rep).await?;
    }
    Ok(())
}

/// Deletes blocks marked longer ago than the delete delay, and partial uploads (no
/// meta.json) whose newest object is older than two days.
async fn clean(
    bucket: &Bucket,
    cfg: &CompactConfig,
    m: &CompactMetrics,
    blocks: &BTreeMap<Ulid, SyncedBlock>,
    rep: &mut PassReport,
) -> anyhow::Result<()> {
    let now = now_ms();
    for id in deletion_due(blocks, cfg.delete_delay, now) {
        delete_block(bucket, &id.to_string()).await?;
        m.deleted.fetch_add(1, Relaxed);
        tracing::info!(block = %id, "block deleted");
        rep.deleted.push(id);
    }
    for dir in abandoned_uploads(bucket, blocks, now).await? {
        delete_block(bucket, &dir).await?;
        m.partial_removed.fetch_add(1, Relaxed);
        tracing::info!(block = %dir, "abandoned partial upload removed");
    }
    Ok(())
}

/// Registers the compactor's metrics in `registry`, read from `m` at each scrape. `all`
/// leaves out `thanos_blocks_meta_synced` (`with_synced` false): its store exports that family
/// by state.
pub fn register_metrics(
    registry: &mut crate::metrics::Registry,
    m: Arc<CompactMetrics>,
    with_synced: bool,
) {
    registry.register_collector(Box::new(CompactCollector { m, with_synced }));
}

/// See [`register_metrics`].
#[derive(Debug)]
struct CompactCollector {
    m: Arc<CompactMetrics>,
    with_synced: bool,
}

impl prometheus_client::collector::Collector for CompactCollector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use crate::metrics::{counter, gauge};
        let (m, e) = (&self.m, &mut enc);
        let f = |a: &AtomicU64| a.load(Relaxed);
        for (name, help, v) in [
            (
                "thanos_compact_iterations_total",
                "Total number of compaction passes.",
                f(&m.iterations),
            ),
            (
                "thanos_compact_group_compactions_total",
                "Total number of group compactions.",
                f(&m.compactions),
            ),
            (
                "thanos_compact_group_compactions_failures_total",
                "Total number of failed group compactions.",
                f(&m.compaction_failures),
            ),
        ] {
            counter(e, name, help, v)?;
        }
        gauge(
            e,
            "thanos_compact_halted",
            "Set to 1 if a group was halted in the last pass (an overlap that may not be merged, or a corrupt block).",
            u64::from(f(&m.halted_groups) > 0),
        )?;
        gauge(
            e,
            "gauntlet_compact_halted_groups",
            "Groups halted in the last pass.",
            f(&m.halted_groups),
        )?;
        for (name, help, v) in [
            (
                "gauntlet_compact_pass_failures_total",
                "Passes that failed a step or halted a group.",
                f(&m.pass_failures),
            ),
            (
                "thanos_compact_downsample_total",
                "Total number of downsamplings.",
                f(&m.downsamples),
            ),
            (
                "gauntlet_compact_parquet_conversions_total",
                "Blocks converted to Parquet shards.",
                f(&m.parquet_conversions),
            ),
            (
                "thanos_compact_downsample_failures_total",
                "Total number of failed downsamplings.",
                f(&m.downsample_failures),
            ),
            (
                "thanos_compact_blocks_marked_for_deletion_total",
                "Blocks given a deletion mark.",
                f(&m.marked_for_deletion),
            ),
            (
                "thanos_compact_blocks_marked_for_no_compact_total",
                "Blocks given a no-compact mark.",
                f(&m.marked_no_compact),
            ),
            (
                "thanos_compact_blocks_cleaned_total",
                "Blocks deleted after their delete delay.",
                f(&m.deleted),
            ),
            (
                "thanos_compact_aborted_partial_uploads_deletion_attempts_total",
                "Abandoned partial uploads removed.",
                f(&m.partial_removed),
            ),
        ] {
            counter(e, name, help, v)?;
        }
        if self.with_synced {
            gauge(
                e,
                "thanos_blocks_meta_synced",
                "Blocks seen by the last sync.",
                f(&m.blocks),
            )?;
        }
        gauge(
            e,
            "gauntlet_compact_busy",
            "1 while a compaction pass runs.",
            f(&m.busy),
        )?;
        gauge(
            e,
            "gauntlet_compact_last_pass_timestamp_seconds",
            "When the last pass finished, Unix seconds.",
            f(&m.last_pass),
        )?;
        counter(
            e,
            "gauntlet_compact_samples_written_total",
            "Samples written by compactions.",
            f(&m.samples),
        )?;
        counter(
            e,
            "gauntlet_compact_merge_seconds_total",
            "Time spent merging blocks (downloads and uploads not counted).",
            f(&m.merge_micros) as f64 / 1e6,
        )?;
        let p = m.progress_now();
        for (name, help, v) in [
            (
                "thanos_compact_todo_compactions",
                "Compactions the planner has left over the bucket as last synced.",
                p.todo.compactions,
            ),
            (
                "thanos_compact_todo_compaction_blocks",
                "Blocks that are inputs of a planned compaction.",
                p.todo.compaction_blocks.len(),
            ),
            (
                "thanos_compact_todo_downsample_blocks",
                "Blocks due for downsampling.",
                p.todo.downsample_blocks.len(),
            ),
            (
                "thanos_compact_todo_deletion_blocks",
                "Blocks past their resolution's retention, not yet marked for deletion.",
                p.todo.retention_blocks.len(),
            ),
        ] {
            gauge(e, name, help, v as u64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::block::meta::ThanosFile;

    fn block(id: u128, index_bytes: Option<i64>) -> (Ulid, SyncedBlock) {
        let ulid = Ulid::from(id);
        let json = format!(
            r#"{{"ulid":"{ulid}","minTime":0,"maxTime":7200000,"stats":{{}},"compaction":{{"level":1,"sources":["{ulid}"]}},"version":1}}"#
        );
        let mut meta =
            BlockMeta::parse(json.as_bytes(), std::path::Path::new("meta.json")).unwrap();
        if let Some(n) = index_bytes {
            meta.thanos = Some(ThanosMeta {
                files: vec![ThanosFile {
                    rel_path: "index".into(),
                    size_bytes: n,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let b = SyncedBlock {
            meta,
            deletion: None,
            no_compact: false,
            no_downsample: false,
        };
        (ulid, b)
    }

    #[test]
    fn the_largest_index_leaves_a_plan_whose_indexes_reach_the_limit() {
        let blocks: BTreeMap<Ulid, SyncedBlock> = [
            block(1, Some(40)),
            block(2, Some(70)),
            block(3, None),
            block(4, Some(10)),
        ]
        .into_iter()
        .collect();
        let ids: Vec<Ulid> = blocks.keys().copied().collect();
        assert_eq!(index_too_large(&blocks, &ids, 121), None);
        assert_eq!(index_too_large(&blocks, &ids, 120), Some((ids[1], 120)));
        // Without the largest, the rest fit.
        let rest = [ids[0], ids[2], ids[3]];
        assert_eq!(index_too_large(&blocks, &rest, 120), None);
        // A single block is never taken out: there is nothing to merge it with.
        assert_eq!(index_too_large(&blocks, &ids[1..2], 1), None);
    }
}
