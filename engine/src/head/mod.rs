//! The in-memory head a receiver appends to: one per tenant, its series sharded across the
//! engine cores by label hash, every stored sample logged to a Prometheus-format WAL (or, when
//! out of order, to the write-behind log) before the append returns, and cut into a standard
//! block once it spans one and a half block ranges, as Prometheus's head is.
//!
//! A tenant's directory is a Prometheus TSDB directory (`wal/`, `wbl/` and block directories),
//! so promtool and Prometheus read what the head wrote, and the head replays a WAL and WBL
//! Prometheus wrote.
//!
//! Each core owns its part of every tenant's head ([`shard::HeadShard`]): a request is split by
//! [`Head::route`] into one [`AppendBatch`] per core, each core appends its batch, encodes the
//! records for what it stored and writes them (one writer per log per tenant, behind a lock
//! held for the write only). A series always lives on the same core, so its samples reach the
//! WAL in the order they were stored, which replay relies on.
//!
//! Out-of-order samples and native histograms go to `wbl/` only, as Prometheus means to (it
//! logs them to both logs today, and its WAL replay drops the WAL's copy as older than the
//! series' newest sample): replay reads the WAL, dropping samples older than their series'
//! newest, then the WBL into the out-of-order samples ([`wbl`]).

mod exemplars;
mod histograms;
mod labels;
mod postings;
mod refs;
mod series;
mod shard;
mod slab;
mod stream;
mod wbl;

pub use exemplars::{
    EXEMPLAR_MAX_LABEL_SET_LENGTH, Exemplar, ExemplarError, ExemplarStats, ExemplarStore,
    SeriesExemplars,
};
pub use histograms::HistogramValue;
pub use series::Appended;
pub use shard::{AppendBatch, AppendReport, HeadMemory};
pub use stream::{FETCH_SERIES, HeadRead, HeadStream};

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;

use self::labels::SeriesLabels;
use self::refs::RefMap;
use self::shard::{AppendCheck, HeadShard};
use self::wbl::Wbl;
use crate::block::cut::CutOptions;
use crate::block::histogram_cut::CutHistogramChunk;
use crate::block::meta::{BlockMeta, ThanosMeta};
use crate::block::writer::{BlockWriter, EncodedChunk};
use crate::budget::MemoryBudget;
use crate::chunk::Encoding;
use crate::error::{Error, Result};
use crate::labels::{Labels, Matcher};
use crate::query::{Queryable, SelectHints, Series};
use crate::shard::{Canceled, RuntimeConfig, RuntimeError, ShardSet};
use crate::wal::record::{RecordType, RefExemplar, RefSample};
use crate::wal::{self, WalError, WalOptions, WalReader, WalWriter};

/// Prometheus's block range and head chunk range: 2h in ms.
pub const DEFAULT_BLOCK_DURATION_MS: i64 = 2 * 3600 * 1000;

/// The head's settings, as Thanos Receive's `--tsdb.*` flags give them.
#[derive(Debug, Clone)]
pub struct HeadOptions {
    /// Block range, ms (`--tsdb.min-block-duration`): chunks never cross a multiple of it and
    /// the head is cut into blocks of it.
    pub block_duration_ms: i64,
    /// Out-of-order samples this far behind the newest sample are kept, ms
    /// (`--tsdb.out-of-order.time-window`); 0 refuses every out-of-order sample.
    pub ooo_window_ms: i64,
    /// Samples further than this ahead of the wall clock are refused, ms
    /// (`--tsdb.too-far-in-future.time-window`); 0 = no limit.
    pub too_far_in_future_ms: i64,
    /// Active series the tenant may hold (`--receive.limits.max-series`); 0 = no limit.
    pub max_series: u64,
    /// Exemplars the head keeps, newest first out of a circular buffer
    /// (`--tsdb.max-exemplars`); 0 = exemplar storage off.
    pub max_exemplars: u64,
    /// Segment size and compression of the WAL.
    pub wal: WalOptions,
    /// The memory budget selections from the head reserve their id lists and batches from:
    /// the budget of the role that owns the head (default: one without a limit).
    pub budget: Arc<MemoryBudget>,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            block_duration_ms: DEFAULT_BLOCK_DURATION_MS,
            ooo_window_ms: 0,
            too_far_in_future_ms: 0,
            max_series: 0,
            max_exemplars: 0,
            wal: WalOptions::default(),
            budget: MemoryBudget::unlimited(),
        }
    }
}

impl HeadOptions {
    fn cut(&self) -> CutOptions {
        CutOptions {
            chunk_range_ms: self.block_duration_ms,
            ..CutOptions::default()
        }
    }
}

/// What each core holds: its part of every tenant's head, by tenant slot.
#[derive(Debug, Default)]
struct HeadCore {
    tenants: RefCell<Vec<Option<HeadShard>>>,
}

impl HeadCore {
    fn with<R>(&self, slot: usize, f: impl FnOnce(&mut HeadShard) -> R) -> R {
        let mut t = self.tenants.borrow_mut();
        if t.len() <= slot {
            t.resize_with(slot + 1, || None);
        }
        f(t[slot].get_or_insert_with(HeadShard::default))
    }
}

/// The engine cores every tenant's head lives on.
#[derive(Debug)]
pub struct HeadRuntime {
    cores: ShardSet<HeadCore>,
    next_slot: AtomicUsize,
}

impl HeadRuntime {
    /// Starts the cores (`cfg.cores`, 0 = one per CPU).
    pub fn start(cfg: &RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let mut cfg = cfg.clone();
        if cfg.name.is_empty() {
            cfg.name = "gauntlet-head".into();
        }
        let cores = ShardSet::start(&cfg, |_| HeadCore::default())?;
        Ok(Arc::new(HeadRuntime {
            cores,
            next_slot: AtomicUsize::new(0),
        }))
    }

    /// Has each core run `hook` once idle (see [`ShardSet::set_idle_hook`]).
    pub fn set_idle_hook(&self, hook: crate::shard::IdleHook) {
        self.cores.set_idle_hook(hook);
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.cores()
    }
}

/// The WAL and WBL writers and their group-commit counters (one fsync of both covers every
/// append logged before it).
#[derive(Debug)]
struct WalState {
    writer: WalWriter,
    wbl: Wbl,
    /// Appends logged so far.
    logged: u64,
    /// Appends covered by the last fsync.
    synced: u64,
}

/// What the cores share about one tenant's head.
#[derive(Debug)]
struct Shared {
    next_ref: AtomicU64,
    series: AtomicU64,
    /// The last [`Head::memory`] taken: chunk, label and index bytes.
    memory: [AtomicU64; 3],
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples before this are in blocks already, ms.
    min_valid: AtomicI64,
    /// `None` until replay is done.
    wal: Mutex<Option<WalState>>,
    appended: AtomicU64,
    appended_ooo: AtomicU64,
    refused: AtomicU64,
    wal_bytes: AtomicU64,
    wbl_bytes: AtomicU64,
    /// The label names the cores' series hold, kept by the cores.
    names: Arc<postings::SharedNames>,
    /// The head's exemplars, shared by the cores (see [`exemplars`]).
    exemplars: Mutex<ExemplarStore>,
}

impl Shared {
    fn check(&self, opts: &HeadOptions) -> AppendCheck {
        let head_max = self.max_time.load(Relaxed);
        // Prometheus's appendable minimum: nothing older than half a chunk range behind the
        // newest sample, and nothing already in a block.
        let in_order = head_max.saturating_sub(opts.block_duration_ms / 2);
        let min_valid = self.min_valid.load(Relaxed).max(in_order);
        let ooo_min = if opts.ooo_window_ms > 0 {
            head_max
                .saturating_sub(opts.ooo_window_ms)
                .max(self.min_valid.load(Relaxed))
        } else {
            i64::MAX
        };
        let max_valid = if opts.too_far_in_future_ms > 0 {
            now_ms().saturating_add(opts.too_far_in_future_ms)
        } else {
            i64::MAX
        };
        AppendCheck {
            min_valid,
            ooo_min,
            max_valid,
        }
    }

    /// Counts a new series, unless the tenant is at `max` (0 = no limit).
    fn reserve_series(&self, max: u64) -> bool {
        if max == 0 {
            self.series.fetch_add(1, Relaxed);
            return true;
        }
        self.series
            .fetch_update(Relaxed, Relaxed, |c| (c < max).then_some(c + 1))
            .is_ok()
    }

    fn stored(&self, rep: &AppendReport) {
        self.appended.fetch_add(rep.appended, Relaxed);
        self.appended_ooo.fetch_add(rep.appended_ooo, Relaxed);
        self.refused
            .fetch_add(rep.conflicts() + rep.series_limited, Relaxed);
        if rep.max_time != i64::MIN {
            self.max_time.fetch_max(rep.max_time, Relaxed);
            self.min_time.fetch_min(rep.min_time, Relaxed);
        }
    }

    /// Stores the exemplars of the series of `batch` the core found or created
    /// (`(series index, ref)` in `found`); returns those stored, for the WAL.
    fn store_exemplars(
        &self,
        batch: &AppendBatch,
        found: &[(usize, u64)],
        rep: &mut AppendReport,
    ) -> Vec<RefExemplar> {
        let mut out = Vec::new();
        if found.is_empty() {
            return out;
        }
        let mut store = self.exemplars.lock().unwrap_or_else(|p| p.into_inner());
        if !store.enabled() {
            return out;
        }
        for &(i, r) in found {
            let Some((series, exemplars)) = batch.series_exemplars(i) else {
                continue;
            };
            let series = series.to_labels();
            for e in exemplars {
                match store.add(&series, e.clone()) {
                    Ok(true) => {
                        rep.exemplars_appended += 1;
                        out.push(RefExemplar {
                            r,
                            t: e.ts,
                            v: e.value,
                            labels: e.labels.clone(),
                        });
                    }
                    Ok(false) | Err(ExemplarError::Disabled) => {}
                    Err(ExemplarError::OutOfOrder) => rep.exemplars_out_of_order += 1,
                    Err(ExemplarError::LabelLength) => rep.exemplars_invalid += 1,
                }
            }
        }
        out
    }

    /// Encodes and writes the records for what one core stored: its new series and in-order
    /// samples to the WAL, its out-of-order samples and histograms to the WBL (after the WAL,
    /// whose series records they refer to), in the record types Prometheus 3 writes there.
    #[allow(
        clippy::too_many_arguments,
        reason = "one list per record kind, as the core's append fills them"
    )]
    fn log(
        &self,
        created: &[shard::Created],
        stored: &[RefSample],
        stored_ooo: &[RefSample],
        stored_hist: Vec<shard::StoredHistogram>,
        stored_ooo_hist: Vec<shard::StoredHistogram>,
        exemplars: &[RefExemplar],
        buf: &mut Vec<u8>,
    ) -> Result<(), WalError> {
        if created.is_empty()
            && exemplars.is_empty()
            && stored.is_empty()
            && stored_ooo.is_empty()
            && stored_hist.is_empty()
            && stored_ooo_hist.is_empty()
        {
            return Ok(());
        }
        buf.clear();
        let mut bounds = Vec::with_capacity(2);
        if !created.is_empty() {
            wal::record::begin_series(buf);
            for (r, labels) in created {
                wal::record::encode_series_pairs(buf, *r, labels.iter());
            }
            bounds.push(buf.len());
        }
        if !stored.is_empty() {
            wal::record::encode_samples(buf, stored);
            bounds.push(buf.len());
        }
        encode_histogram_records(buf, &stored_hist, &mut bounds);
        // After the samples, as Prometheus's head logs them.
        if !exemplars.is_empty() {
            wal::record::encode_exemplars(buf, exemplars);
            bounds.push(buf.len());
        }
        let wal_end = buf.len();
        // WBL records, each with its newest sample (the log tracks each segment's newest).
        let mut ooo_bounds = Vec::new();
        let mut newest = Vec::new();
        if !stored_ooo.is_empty() {
            wal::record::encode_samples(buf, stored_ooo);
            ooo_bounds.push(buf.len());
            newest.push(stored_ooo.iter().map(|s| s.t).max().unwrap_or(i64::MIN));
        }
        for run in histogram_runs(&stored_ooo_hist) {
            let before = ooo_bounds.len();
            encode_histogram_records(buf, run, &mut ooo_bounds);
            let t = run.iter().map(|s| s.1).max().unwrap_or(i64::MIN);
            newest.resize(newest.len() + ooo_bounds.len() - before, t);
        }
        let recs = split_records(buf, 0, &bounds);
        let ooo_recs: Vec<(&[u8], i64)> = split_records(buf, wal_end, &ooo_bounds)
            .into_iter()
            .zip(newest)
            .collect();
        let mut guard = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        let w = guard.as_mut().ok_or_else(wal_closed)?;
        if !recs.is_empty() {
            w.writer.log(&recs)?;
        }
        if !ooo_recs.is_empty() {
            w.wbl.log(&ooo_recs)?;
        }
        w.logged += 1;
        self.wal_bytes.fetch_add(wal_end as u64, Relaxed);
        self.wbl_bytes
            .fetch_add((buf.len() - wal_end) as u64, Relaxed);
        Ok(())
    }
}

/// Encodes `stored` as histogram records at the end of `buf`, pushing each record's end to
/// `bounds`. Records follow the order the histograms were stored in, one record per run of the
/// same kind (integer or float, exponential or custom buckets): a series that switched kinds
/// in one append replays in the same order.
fn encode_histogram_records(
    buf: &mut Vec<u8>,
    stored: &[shard::StoredHistogram],
    bounds: &mut Vec<usize>,
) {
    for run in histogram_runs(stored) {
        let (ints, floats) = split_histograms(run);
        bounds.extend(wal::record::encode_histogram_samples(buf, &ints));
        bounds.extend(wal::record::encode_float_histogram_samples(buf, &floats));
    }
}

/// `stored` in runs of one record kind ([`histogram_record_kind`]).
fn histogram_runs(
    stored: &[shard::StoredHistogram],
) -> impl Iterator<Item = &[shard::StoredHistogram]> {
    let mut rest = stored;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let kind = histogram_record_kind(&first.2);
        let n = rest
            .iter()
            .position(|s| histogram_record_kind(&s.2) != kind)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// The records of `buf` from `start`, ending at each of `bounds`.
fn split_records<'a>(buf: &'a [u8], start: usize, bounds: &[usize]) -> Vec<&'a [u8]> {
    let mut recs = Vec::with_capacity(bounds.len());
    let mut start = start;
    for &end in bounds {
        recs.push(&buf[start..end]);
        start = end;
    }
    recs
}

/// The WAL record type a histogram goes to: (float, custom buckets).
fn histogram_record_kind(h: &HistogramValue) -> (bool, bool) {
    match h {
        HistogramValue::Int(h) => (false, h.uses_custom_buckets()),
        HistogramValue::Float(h) => (true, h.uses_custom_buckets()),
    }
}

/// Stored histograms as the WAL's integer and float histogram samples.
fn split_histograms(
    stored: &[shard::StoredHistogram],
) -> (
    Vec<wal::record::RefHistogramSample>,
    Vec<wal::record::RefFloatHistogramSample>,
) {
    let (mut ints, mut floats) = (Vec::new(), Vec::new());
    for (r, t, h) in stored.iter().cloned() {
        match h {
            HistogramValue::Int(h) => ints.push(wal::record::RefHistogramSample { r, t, h }),
            HistogramValue::Float(h) => {
                floats.push(wal::record::RefFloatHistogramSample { r, t, h })
            }
        }
    }
    (ints, floats)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A snapshot of a head's counters, for `/metrics` and status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadStats {
    /// Series held.
    pub series: u64,
    /// Oldest sample held, ms (`i64::MAX` when empty).
    pub min_time: i64,
    /// Newest sample held, ms (`i64::MIN` when empty).
    pub max_time: i64,
    /// Samples stored in order since start (replay excluded).
    pub appended: u64,
    /// Samples stored out of order since start.
    pub appended_ooo: u64,
    /// Samples refused since start (conflicts and limits).
    pub refused: u64,
    /// Bytes of records written to the WAL since start.
    pub wal_bytes: u64,
    /// Bytes of records written to the WBL (out-of-order samples) since start.
    pub wbl_bytes: u64,
}

/// What replaying the WAL and the WBL found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Series records read.
    pub series: u64,
    /// Samples stored, from both logs.
    pub samples: u64,
    /// Of those, samples stored from the WBL (out-of-order samples).
    pub wbl_samples: u64,
    /// Samples dropped: before the newest block, of unknown series, or in the WAL and older
    /// than their series' newest sample (the out-of-order samples Prometheus logs to both
    /// logs; the WBL's copy is the one kept).
    pub dropped: u64,
    /// Exemplars stored from the WAL.
    pub exemplars: u64,
    /// Exemplars in the WAL not stored: of unknown series, refused, or storage off.
    pub dropped_exemplars: u64,
    /// Records of types the head does not keep (metadata, exemplars when storage is off).
    pub skipped_records: u64,
    /// Where the WAL was torn or corrupt and cut, if it was.
    pub repaired: Option<String>,
    /// Where the WBL was torn or corrupt and cut, if it was.
    pub wbl_repaired: Option<String>,
    /// Wall time, ms.
    pub millis: u64,
}

/// The two logs replay reads, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    Wal,
    Wbl,
}

/// What replay carries from record to record and from the WAL to the WBL.
struct Replay {
    /// The core each declared ref's series lives on.
    ref_core: RefMap<u16>,
    series_out: Vec<ReplaySeries>,
    samples_out: Vec<Vec<RefSample>>,
    /// Histogram samples bound for each core. A batch holds float samples or histogram
    /// samples, never both, so that each series gets them in log order.
    hists_out: Vec<Vec<shard::StoredHistogram>>,
    /// Emptied batch buffers the cores gave back, for the next batches: fresh buffers' pages
    /// are faulted in and zeroed by the kernel, which took half of the reader's time.
    spare: ReplayBuffers,
    samples: Vec<wal::record::RefSample>,
    /// The largest ref in a series record or a WBL sample: refs handed out after replay start
    /// past it, so a WBL sample of a series the WAL no longer declares is never taken for a
    /// new series'.
    max_ref: u64,
    pending: usize,
    /// The batches the cores are appending while the next is read and decoded, oldest first.
    in_flight: std::collections::VecDeque<Vec<ReplayCall>>,
    /// The WAL's newest exemplars, at most as many as the store holds (older ones would be
    /// overwritten anyway); stored once every series is in.
    exemplars: std::collections::VecDeque<RefExemplar>,
}

/// Notes the (ref, timestamp) pairs of a WBL record read from segment `segment`: the largest
/// ref in `max_ref`, and the segment's newest sample in `newest`.
fn wbl_seen(
    max_ref: &mut u64,
    seen: impl Iterator<Item = (u64, i64)>,
    segment: Option<u32>,
    newest: &mut std::collections::BTreeMap<u32, i64>,
) {
    let mut t_max = None;
    for (r, t) in seen {
        *max_ref = (*max_ref).max(r);
        t_max = t_max.max(Some(t));
    }
    if let (Some(t), Some(n)) = (t_max, segment) {
        let e = newest.entry(n).or_insert(t);
        *e = (*e).max(t);
    }
}

impl Replay {
    /// Sends a histogram sample read from the log to its series' core.
    fn route_histogram(&mut self, r: u64, t: i64, h: HistogramValue, report: &mut ReplayReport) {
        match self.ref_core.get(r) {
            Some(c) => {
                self.hists_out[c as usize].push((r, t, h));
                self.pending += 1;
            }
            None => report.dropped += 1,
        }
    }
}

/// One tenant's head.
#[derive(Debug)]
pub struct Head {
    rt: Arc<HeadRuntime>,
    slot: usize,
    dir: PathBuf,
    opts: HeadOptions,
    shared: Arc<Shared>,
}

/// Work read from the log before it goes to the cores, in samples (a series counts as
/// [`REPLAY_SERIES_WEIGHT`]): batches small enough that the cores start early and finish soon
/// after the reader, large enough that a batch's samples sorted by series still touch memory
/// in order.
const REPLAY_BATCH: usize = 1 << 17;
/// A series record's cost to its core (a new series and its postings) in samples.
const REPLAY_SERIES_WEIGHT: usize = 8;
/// Batches handed to the cores and not yet answered while the reader reads on.
const REPLAY_DEPTH: usize = 4;

impl Head {
    /// Opens the tenant directory `dir` (created when missing): replays its WAL, then its WBL,
    /// into the cores, then starts a new WAL segment (and a new WBL segment when the
    /// out-of-order window is open). Samples older than the newest block's end are dropped:
    /// they are in that block already. Blocks Prometheus made of out-of-order samples alone
    /// do not count, as Prometheus does not count them: they may end after in-order samples
    /// no block holds.
    pub fn open(
        rt: Arc<HeadRuntime>,
        dir: &Path,
        opts: HeadOptions,
    ) -> Result<(Head, ReplayReport)> {
        let t0 = Instant::now();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut min_valid = i64::MIN;
        for b in crate::block::reader::block_dirs(dir)? {
            if let Ok(meta) = BlockMeta::read(&b)
                && !meta
                    .compaction
                    .hints
                    .iter()
                    .any(|h| h == "from-out-of-order")
            {
                min_valid = min_valid.max(meta.max_time);
            }
        }
        let slot = rt.next_slot.fetch_add(1, Relaxed);
        let wal_dir = dir.join("wal");
        let wbl_dir = dir.join("wbl");
        let exemplars = Mutex::new(ExemplarStore::new(opts.max_exemplars));
        let mut head = Head {
            rt,
            slot,
            dir: dir.to_path_buf(),
            opts,
            shared: Arc::new(Shared {
                next_ref: AtomicU64::new(1),
                series: AtomicU64::new(0),
                memory: Default::default(),
                min_time: AtomicI64::new(i64::MAX),
                max_time: AtomicI64::new(i64::MIN),
                min_valid: AtomicI64::new(min_valid),
                wal: Mutex::new(None),
                appended: AtomicU64::new(0),
                appended_ooo: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                wal_bytes: AtomicU64::new(0),
                wbl_bytes: AtomicU64::new(0),
                names: Arc::default(),
                exemplars,
            }),
        };
        let names = head.shared.names.clone();
        head.on_cores(move |c| c.with(slot, |s| s.share_names(names.clone())))?;
        let mut report = ReplayReport::default();
        let newest = if wal_dir.is_dir() || wbl_dir.is_dir() {
            head.replay(&wal_dir, &wbl_dir, &mut report)?
        } else {
            Default::default()
        };
        let writer = WalWriter::open(&wal_dir, head.opts.wal).map_err(wal_error)?;
        let mut wbl = Wbl::new(&wbl_dir, head.opts.wal, newest);
        if head.opts.ooo_window_ms > 0 {
            wbl.open_writer().map_err(wal_error)?;
        }
        *head.shared.wal.lock().unwrap_or_else(|p| p.into_inner()) = Some(WalState {
            writer,
            wbl,
            logged: 0,
            synced: 0,
        });
        report.millis = t0.elapsed().as_millis() as u64;
        Ok((head, report))
    }

    /// Replays the WAL, then the WBL (each when its directory exists); returns the newest
    /// sample timestamp of each WBL segment, ms.
    fn replay(
        &mut self,
        wal_dir: &Path,
        wbl_dir: &Path,
        report: &mut ReplayReport,
    ) -> Result<std::collections::BTreeMap<u32, i64>> {
        let cores = self.rt.cores();
        let mut st = Replay {
            ref_core: RefMap::default(),
            series_out: (0..cores).map(|_| ReplaySeries::default()).collect(),
            samples_out: (0..cores).map(|_| replay_samples_buffer(cores)).collect(),
            hists_out: (0..cores).map(|_| Vec::new()).collect(),
            spare: ReplayBuffers::default(),
            samples: Vec::new(),
            max_ref: 0,
            pending: 0,
            in_flight: Default::default(),
            exemplars: Default::default(),
        };
        if wal_dir.is_dir() {
            self.replay_log(wal_dir, Log::Wal, &mut st, report)?;
        }
        // Every WAL sample is in before the first WBL sample: which of a series' samples are
        // in order depends on its newest in-order sample.
        let mut newest = std::collections::BTreeMap::new();
        if wbl_dir.is_dir() {
            newest = self.replay_log(wbl_dir, Log::Wbl, &mut st, report)?;
        }
        self.replay_exemplars(std::mem::take(&mut st.exemplars), report)?;
        let slot = self.slot;
        let counts = self.on_cores(move |c| {
            c.with(slot, |s| {
                s.end_replay();
                (s.len() as u64, s.min_time())
            })
        })?;
        self.shared
            .series
            .store(counts.iter().map(|c| c.0).sum(), Relaxed);
        self.shared.next_ref.store(st.max_ref + 1, Relaxed);
        if let Some(min) = counts.iter().filter_map(|c| c.1).min() {
            self.shared.min_time.store(min, Relaxed);
        }
        Ok(newest)
    }

    /// Stores the exemplars the WAL held, in log order, once their series are in: each
    /// core names the labels of the refs it replayed. Exemplars of series the WAL does not
    /// declare are dropped.
    fn replay_exemplars(
        &self,
        exemplars: std::collections::VecDeque<RefExemplar>,
        report: &mut ReplayReport,
    ) -> Result<()> {
        if exemplars.is_empty() {
            return Ok(());
        }
        let mut refs: Vec<u64> = exemplars.iter().map(|e| e.r).collect();
        refs.sort_unstable();
        refs.dedup();
        let refs = Arc::new(refs);
        let slot = self.slot;
        let found = self.on_cores(move |c| c.with(slot, |s| s.labels_by_ref(&refs)))?;
        let labels: std::collections::HashMap<u64, Labels> = found.into_iter().flatten().collect();
        let mut store = self
            .shared
            .exemplars
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for e in exemplars {
            let Some(series) = labels.get(&e.r) else {
                report.dropped_exemplars += 1;
                continue;
            };
            let ex = Exemplar {
                labels: e.labels,
                value: e.v,
                ts: e.t,
            };
            match store.add(series, ex) {
                Ok(true) => report.exemplars += 1,
                Ok(false) | Err(_) => report.dropped_exemplars += 1,
            }
        }
        Ok(())
    }

    /// Reads one log to its end (cutting a torn or corrupt tail off, as Prometheus does) and
    /// hands its series and samples to the cores; returns when the cores have appended them
    /// all, with the newest sample timestamp of each segment read (ms). Series records count
    /// in the WAL only, as in Prometheus's replay of its WBL; so do tombstones, and the WBL's
    /// m-map markers (which point into Prometheus's `chunks_head/`) are skipped.
    fn replay_log(
        &self,
        dir: &Path,
        log: Log,
        st: &mut Replay,
        report: &mut ReplayReport,
    ) -> Result<std::collections::BTreeMap<u32, i64>> {
        let name = match log {
            Log::Wal => "WAL",
            Log::Wbl => "WBL",
        };
        let mut newest = std::collections::BTreeMap::new();
        let mut reader = WalReader::open(dir).map_err(wal_error)?;
        loop {
            let rec = match reader.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e @ WalError::Corrupt { .. }) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "{name} torn or corrupt; cutting it there, as Prometheus does");
                    let at = Some(e.to_string());
                    match log {
                        Log::Wal => report.repaired = at,
                        Log::Wbl => report.wbl_repaired = at,
                    }
                    wal::repair(dir, &e).map_err(wal_error)?;
                    break;
                }
                Err(e) => return Err(wal_error(e)),
            };
            let typ = wal::record::record_type(rec);
            let is_hist = matches!(
                typ,
                Some(
                    RecordType::HistogramSamples
                        | RecordType::CustomBucketsHistogramSamples
                        | RecordType::FloatHistogramSamples
                        | RecordType::CustomBucketsFloatHistogramSamples
                )
            );
            let is_float = matches!(typ, Some(RecordType::Samples | RecordType::SamplesV2));
            let switch = (is_hist && st.samples_out.iter().any(|s| !s.is_empty()))
                || (is_float && st.hists_out.iter().any(|h| !h.is_empty()));
            if switch {
                let sent = self.replay_send(st, log);
                st.in_flight.push_back(sent);
                if st.in_flight.len() > REPLAY_DEPTH
                    && let Some(prev) = st.in_flight.pop_front()
                {
                    replay_wait(prev, log, report, &mut st.spare)?;
                }
                st.pending = 0;
            }
            let decoded = match (typ, log) {
                (
                    Some(RecordType::HistogramSamples | RecordType::CustomBucketsHistogramSamples),
                    _,
                ) => {
                    let mut hs = Vec::new();
                    wal::record::decode_histogram_samples_into(rec, &mut hs).map(|skipped| {
                        report.dropped += skipped as u64;
                        if log == Log::Wbl {
                            let seen = hs.iter().map(|s| (s.r, s.t));
                            let seg = segment_number(reader.segment());
                            wbl_seen(&mut st.max_ref, seen, seg, &mut newest);
                        }
                        for s in hs {
                            st.route_histogram(s.r, s.t, HistogramValue::Int(s.h), report);
                        }
                    })
                }
                (
                    Some(
                        RecordType::FloatHistogramSamples
                        | RecordType::CustomBucketsFloatHistogramSamples,
                    ),
                    _,
                ) => {
                    let mut hs = Vec::new();
                    wal::record::decode_float_histogram_samples_into(rec, &mut hs).map(|skipped| {
                        report.dropped += skipped as u64;
                        if log == Log::Wbl {
                            let seen = hs.iter().map(|s| (s.r, s.t));
                            let seg = segment_number(reader.segment());
                            wbl_seen(&mut st.max_ref, seen, seg, &mut newest);
                        }
                        for s in hs {
                            st.route_histogram(s.r, s.t, HistogramValue::Float(s.h), report);
                        }
                    })
                }
                (Some(RecordType::Samples | RecordType::SamplesV2), _) => {
                    st.samples.clear();
                    wal::record::decode_samples_into(rec, &mut st.samples).map(|()| {
                        for s in &st.samples {
                            match st.ref_core.get(s.r) {
                                Some(c) => {
                                    st.samples_out[c as usize].push(*s);
                                    st.pending += 1;
                                }
                                None => report.dropped += 1,
                            }
                        }
                        if log == Log::Wbl {
                            let seen = st.samples.iter().map(|s| (s.r, s.t));
                            let seg = segment_number(reader.segment());
                            wbl_seen(&mut st.max_ref, seen, seg, &mut newest);
                        }
                    })
                }
                (Some(RecordType::Series), Log::Wal) => {
                    let mut flat = wal::record::FlatSeries::default();
                    wal::record::decode_series_flat(rec, &mut flat).map(|()| {
                        for (r, labels) in flat.iter() {
                            let hash = hash_series_labels(labels);
                            let core = self.route(hash);
                            st.ref_core.insert(r, core as u16);
                            st.max_ref = st.max_ref.max(r);
                            st.series_out[core].push(hash, r, labels);
                            report.series += 1;
                            st.pending += REPLAY_SERIES_WEIGHT;
                        }
                    })
                }
                (Some(RecordType::Exemplars), Log::Wal) => {
                    let max = self.opts.max_exemplars as usize;
                    let mut got = Vec::new();
                    wal::record::decode_exemplars_into(rec, &mut got).map(|()| {
                        if max == 0 {
                            return;
                        }
                        for e in got {
                            if st.exemplars.len() == max {
                                st.exemplars.pop_front();
                            }
                            st.exemplars.push_back(e);
                        }
                    })
                }
                (Some(RecordType::Tombstones), Log::Wal)
                | (Some(RecordType::MmapMarkers), Log::Wbl) => Ok(()),
                _ => {
                    report.skipped_records += 1;
                    Ok(())
                }
            };
            if let Err(e) = decoded {
                // The fragment checksums held, so the record was written like this; skipping
                // it loses its own content only.
                tracing::warn!(dir = %dir.display(), segment = %reader.segment().display(), error = %e, "{name} record does not decode; skipped");
                report.skipped_records += 1;
            }
            if st.pending >= REPLAY_BATCH {
                let sent = self.replay_send(st, log);
                st.in_flight.push_back(sent);
                if st.in_flight.len() > REPLAY_DEPTH
                    && let Some(prev) = st.in_flight.pop_front()
                {
                    replay_wait(prev, log, report, &mut st.spare)?;
                }
                st.pending = 0;
            }
        }
        let last = self.replay_send(st, log);
        while let Some(prev) = st.in_flight.pop_front() {
            replay_wait(prev, log, report, &mut st.spare)?;
        }
        replay_wait(last, log, report, &mut st.spare)?;
        st.pending = 0;
        Ok(newest)
    }

    /// Hands each core its part of the replay read so far from `log`; the answers come back
    /// through [`replay_wait`].
    fn replay_send(&self, st: &mut Replay, log: Log) -> Vec<ReplayCall> {
        let slot = self.slot;
        let cores = self.rt.cores();
        let mut calls: Vec<ReplayCall> = Vec::new();
        for (core, ((se, sa), hi)) in st
            .series_out
            .iter_mut()
            .zip(st.samples_out.iter_mut())
            .zip(st.hists_out.iter_mut())
            .enumerate()
        {
            if se.is_empty() && sa.is_empty() && hi.is_empty() {
                continue;
            }
            let mut hi = std::mem::take(hi);
            let mut se = std::mem::replace(se, st.spare.series.pop().unwrap_or_default());
            let sa = std::mem::replace(
                sa,
                st.spare
                    .samples
                    .pop()
                    .unwrap_or_else(|| replay_samples_buffer(cores)),
            );
            let shared = self.shared.clone();
            let opts = self.opts.clone();
            calls.push(Box::pin(self.rt.cores.call(core, move |c| async move {
                c.state().with(slot, |s| {
                    for (hash, r, labels) in se.iter() {
                        s.replay_series(hash, labels, r);
                    }
                    se.clear();
                    // Replay keeps what the logs hold except what blocks hold already; the
                    // head's own bounds at the time they were written were checked then. A
                    // WAL sample older than its series' newest is dropped, as Prometheus's
                    // replay drops it (its copy is in the WBL); a WBL sample is out of order
                    // unless it is the series' newest.
                    let check = AppendCheck {
                        min_valid: shared.min_valid.load(Relaxed),
                        ooo_min: match log {
                            Log::Wal => i64::MAX,
                            Log::Wbl => i64::MIN,
                        },
                        max_valid: i64::MAX,
                    };
                    let mut rep = s.replay_samples(&sa, check, &opts.cut());
                    if !hi.is_empty() {
                        rep.merge(&s.replay_histograms(&mut hi, check, &opts.cut()));
                    }
                    if rep.max_time != i64::MIN {
                        shared.max_time.fetch_max(rep.max_time, Relaxed);
                    }
                    let mut sa = sa;
                    sa.clear();
                    (rep, se, sa)
                })
            })));
        }
        calls
    }

    /// The core that owns the series with label hash `hash`.
    pub fn route(&self, hash: u64) -> usize {
        ((hash >> 32) as usize) % self.rt.cores()
    }

    /// Number of cores, so callers can build one [`AppendBatch`] per core.
    pub fn cores(&self) -> usize {
        self.rt.cores()
    }

    /// The exemplars from `start` to `end` (ms, inclusive) of the series matching every
    /// matcher of at least one of `matcher_sets`, sorted by series labels.
    pub fn select_exemplars(
        &self,
        start: i64,
        end: i64,
        matcher_sets: &[Vec<Matcher>],
    ) -> Vec<SeriesExemplars> {
        let store = self
            .shared
            .exemplars
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        store.select(start, end, matcher_sets)
    }

    /// The exemplar store's figures.
    pub fn exemplar_stats(&self) -> ExemplarStats {
        let store = self
            .shared
            .exemplars
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        store.stats()
    }

    /// The tenant directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The head's settings.
    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    /// Appends `batches[core]` on each core; returns when every stored sample's WAL or WBL
    /// record has been written to the file (not synced: see [`Head::sync_wal`]). A WAL or WBL
    /// failure fails the whole call (the client should retry; samples already stored are then
    /// duplicates, which are not errors).
    pub async fn append(&self, batches: Vec<AppendBatch>) -> Result<AppendReport> {
        let slot = self.slot;
        let mut calls = Vec::with_capacity(batches.len());
        for (core, batch) in batches.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let shared = self.shared.clone();
            let opts = self.opts.clone();
            calls.push(self.rt.cores.call(core, move |c| async move {
                let cut = opts.cut();
                let mut created = Vec::new();
                let mut stored = Vec::with_capacity(batch.samples_len());
                let mut stored_ooo = Vec::new();
                let mut stored_hist = Vec::new();
                let mut stored_ooo_hist = Vec::new();
                let mut exemplar_series = Vec::new();
                let check = shared.check(&opts);
                let mut rep = c.state().with(slot, |s| {
                    s.append(
                        &batch,
                        check,
                        &cut,
                        &|| shared.reserve_series(opts.max_series),
                        &|| shared.next_ref.fetch_add(1, Relaxed),
                        &mut created,
                        &mut stored,
                        &mut stored_ooo,
                        &mut stored_hist,
                        &mut stored_ooo_hist,
                        &mut exemplar_series,
                    )
                });
                let exemplars = shared.store_exemplars(&batch, &exemplar_series, &mut rep);
                shared.stored(&rep);
                let mut buf = Vec::new();
                shared
                    .log(
                        &created,
                        &stored,
                        &stored_ooo,
                        stored_hist,
                        stored_ooo_hist,
                        &exemplars,
                        &mut buf,
                    )
                    .map(|()| rep)
            }));
        }
        let mut total = AppendReport::empty();
        let mut failed = None;
        for r in join_all(calls).await {
            match r.map_err(canceled)? {
                Ok(rep) => total.merge(&rep),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(wal_error(e)),
            None => Ok(total),
        }
    }

    /// fsyncs the WAL and the WBL unless a sync since the caller's last append already
    /// covered it (group commit: concurrent callers share one fsync). Blocking.
    pub fn sync_wal(&self) -> Result<()> {
        let mut guard = self.shared.wal.lock().unwrap_or_else(|p| p.into_inner());
        let w = guard.as_mut().ok_or_else(wal_closed).map_err(wal_error)?;
        if w.synced == w.logged {
            return Ok(());
        }
        let logged = w.logged;
        w.writer.sync().map_err(wal_error)?;
        w.wbl.sync().map_err(wal_error)?;
        w.synced = logged;
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HeadStats {
        let s = &self.shared;
        HeadStats {
            series: s.series.load(Relaxed),
            min_time: s.min_time.load(Relaxed),
            max_time: s.max_time.load(Relaxed),
            appended: s.appended.load(Relaxed),
            appended_ooo: s.appended_ooo.load(Relaxed),
            refused: s.refused.load(Relaxed),
            wal_bytes: s.wal_bytes.load(Relaxed),
            wbl_bytes: s.wbl_bytes.load(Relaxed),
        }
    }

    /// The memory the head holds, by part. Asks every core: for metrics and logs, not hot
    /// paths. Blocking.
    pub fn memory(&self) -> Result<HeadMemory> {
        let slot = self.slot;
        let parts = self.on_cores(move |c| c.with(slot, |s| s.memory()))?;
        let mut m = HeadMemory::default();
        for p in &parts {
            m.merge(p);
        }
        let [c, l, i] = &self.shared.memory;
        c.store(m.chunk_bytes, Relaxed);
        l.store(m.label_bytes, Relaxed);
        i.store(m.index_bytes, Relaxed);
        Ok(m)
    }

    /// What the last [`Head::memory`] found (all zero before the first): for metrics, which
    /// must not wait for the cores.
    pub fn last_memory(&self) -> HeadMemory {
        let [c, l, i] = &self.shared.memory;
        HeadMemory {
            chunk_bytes: c.load(Relaxed),
            label_bytes: l.load(Relaxed),
            index_bytes: i.load(Relaxed),
        }
    }

    /// Runs `f` on every core with this tenant's shard and collects the answers in core order.
    /// Blocking: call it from a thread that may block.
    fn on_cores<R: Send + 'static>(
        &self,
        f: impl Fn(&HeadCore) -> R + Send + Sync + Clone + 'static,
    ) -> Result<Vec<R>> {
        let calls: Vec<_> = (0..self.rt.cores())
            .map(|core| {
                let f = f.clone();
                self.rt
                    .cores
                    .call(core, move |c| async move { f(c.state()) })
            })
            .collect();
        futures::executor::block_on(join_all(calls))
            .into_iter()
            .map(|r| r.map_err(canceled))
            .collect()
    }

    /// Whether any series of the head carries a label named `name`, from the names the cores
    /// keep up to date as series come and go: no call to the cores.
    pub fn has_label_name(&self, name: &str) -> Result<bool> {
        Ok(self.shared.names.contains(name))
    }

    /// Series matching `matchers` with native histograms in `[mint, maxt]`, sorted by labels,
    /// each with the chunks holding those histograms in the encodings they were stored in
    /// (integer histograms in encoding 2, float ones in 3): the head's own chunks, whole, or
    /// where out-of-order histograms fall in the range, the range's histograms cut afresh.
    /// For serving the head over the StoreAPI as Thanos Receive serves it. Blocking.
    pub fn select_histogram_chunks(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<CutHistogramChunk>)>> {
        let slot = self.slot;
        let ms = matchers.to_vec();
        let parts =
            self.on_cores(move |c| c.with(slot, |s| s.histogram_chunks(&ms, mint, maxt)))?;
        let mut out: Vec<_> = parts.into_iter().flatten().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The range `[start, end)` of the next block when the head spans more than one and a half
    /// block ranges (Prometheus's rule), else `None`. `start` is the head's oldest sample and
    /// `end` the end of its block range.
    pub fn due_block(&self) -> Option<(i64, i64)> {
        let min = self.shared.min_time.load(Relaxed);
        let max = self.shared.max_time.load(Relaxed);
        let d = self.opts.block_duration_ms;
        if min == i64::MAX || max == i64::MIN || max - min <= d / 2 * 3 {
            return None;
        }
        Some((min, min.div_euclid(d) * d + d))
    }

    /// Writes the head's samples in `[start, end)` as a block under the tenant directory (with
    /// the Thanos section `thanos`, when given), calls `written` with its meta once it is in
    /// place, then drops the range from memory, truncates the WAL behind a checkpoint and
    /// deletes the WBL segments whose samples are all before `end`.
    /// Readers must see the block before the head lets go of its samples, or a query in
    /// between would miss them: `written` is where a caller makes the block readable.
    /// Returns the block's meta (`None` when the range held nothing). Blocking.
    pub fn cut_block(
        &self,
        start: i64,
        end: i64,
        thanos: Option<ThanosMeta>,
        written: impl FnOnce(&BlockMeta),
    ) -> Result<Option<BlockMeta>> {
        let t0 = Instant::now();
        let slot = self.slot;
        let cut = self.opts.cut();
        // From here no sample may enter the range (an out-of-order one could otherwise land
        // between reading the range and dropping it); if the cut fails, the next one covers it.
        self.shared.min_valid.fetch_max(end, Relaxed);
        // Each core's series of the range in label order; their chunks are read a run of
        // `FETCH_SERIES` at a time per core and the runs merged, so the cut holds a few
        // hundred series' chunks at a time, not a copy of the whole range.
        let picked = self.on_cores(move |c| c.with(slot, |s| s.sorted_in_range(start, end)))?;
        let mut runs: Vec<CutRun> = picked
            .into_iter()
            .map(|ids| CutRun {
                ids,
                next: 0,
                read: std::collections::VecDeque::new(),
            })
            .collect();
        let mut w = BlockWriter::create(&self.dir, self.opts.cut())?;
        w.set_time_range(start, end);
        loop {
            let dry: Vec<usize> = (0..runs.len())
                .filter(|&i| runs[i].read.is_empty() && runs[i].next < runs[i].ids.len())
                .collect();
            if !dry.is_empty() {
                let calls: Vec<_> = dry
                    .iter()
                    .map(|&core| {
                        let run = &mut runs[core];
                        let end_at = (run.next + FETCH_SERIES).min(run.ids.len());
                        let ids = run.ids[run.next..end_at].to_vec();
                        run.next = end_at;
                        self.rt.cores.call(core, move |c| async move {
                            c.state()
                                .with(slot, |s| s.block_series(&ids, start, end, &cut))
                        })
                    })
                    .collect();
                let read = futures::executor::block_on(join_all(calls));
                for (&core, got) in dry.iter().zip(read) {
                    runs[core].read.extend(got.map_err(canceled)?);
                }
                continue;
            }
            // A series lives on one core: the smallest front is the next series overall.
            let Some(core) = (0..runs.len())
                .filter(|&i| !runs[i].read.is_empty())
                .min_by(|&a, &b| runs[a].read[0].0.cmp(&runs[b].read[0].0))
            else {
                break;
            };
            let Some((labels, chunks, hists)) = runs[core].read.pop_front() else {
                break;
            };
            if hists.is_empty() {
                w.add_chunks(&labels, &chunks)?;
                continue;
            }
            // Float and histogram chunks of a series never overlap: each kind closes the
            // other's open chunk.
            let mut merged: Vec<EncodedChunk<'_>> = chunks
                .iter()
                .map(|c| EncodedChunk {
                    encoding: Encoding::Xor,
                    min_time: c.min_time,
                    max_time: c.max_time,
                    data: &c.data,
                })
                .chain(hists.iter().map(|c| EncodedChunk {
                    encoding: c.encoding,
                    min_time: c.min_time,
                    max_time: c.max_time,
                    data: &c.data,
                }))
                .collect();
            merged.sort_by_key(|c| c.min_time);
            w.add_encoded_chunks(&labels, merged)?;
        }
        drop(runs);
        let meta = w.finish(thanos)?;
        if let Some(m) = &meta {
            written(m);
        }
        // The block is in place and readable: what it holds can leave memory and the WAL.
        let left = self.on_cores(move |c| {
            c.with(slot, |s| {
                let removed = s.truncate_before(end);
                (removed as u64, s.min_time(), s.refs())
            })
        })?;
        let removed: u64 = left.iter().map(|l| l.0).sum();
        self.shared.series.fetch_sub(removed, Relaxed);
        let min = left.iter().filter_map(|l| l.1).min().unwrap_or(i64::MAX);
        self.shared.min_time.store(min, Relaxed);
        let live: std::collections::HashSet<u64> = left.into_iter().flat_map(|l| l.2).collect();
        self.truncate_wal(&live, end)?;
        let wbl_deleted = self.truncate_wbl(end)?;
        if let Some(m) = &meta {
            tracing::info!(
                dir = %self.dir.display(),
                block = %m.ulid,
                min_time = m.min_time,
                max_time = m.max_time,
                series = m.stats.num_series,
                samples = m.stats.num_samples,
                series_removed = removed,
                wbl_segments_deleted = wbl_deleted,
                took_ms = t0.elapsed().as_millis() as u64,
                "head cut into a block"
            );
        }
        Ok(meta)
    }

    /// Starts a new WAL segment, checkpoints the closed ones keeping the live series and the
    /// samples from `mint`, and deletes what the checkpoint replaces.
    fn truncate_wal(&self, live: &std::collections::HashSet<u64>, mint: i64) -> Result<()> {
        let wal_dir = self.dir.join("wal");
        let closed = {
            let mut guard = self.shared.wal.lock().unwrap_or_else(|p| p.into_inner());
            let w = guard.as_mut().ok_or_else(wal_closed).map_err(wal_error)?;
            w.writer.next_segment().map_err(wal_error)?
        };
        let first = match wal::last_checkpoint(&wal_dir).map_err(wal_error)? {
            Some((_, n)) => n + 1,
            None => 0,
        };
        let first = wal::segment_range(&wal_dir)
            .map_err(wal_error)?
            .map_or(first, |(lo, _)| lo.max(first));
        wal::checkpoint(&wal_dir, first, closed, &|r| live.contains(&r), mint)
            .map_err(wal_error)?;
        wal::delete_segments_before(&wal_dir, closed + 1).map_err(wal_error)?;
        wal::delete_checkpoints_before(&wal_dir, closed).map_err(wal_error)?;
        Ok(())
    }

    /// Starts a new WBL segment and deletes the oldest whose samples are all before `end`
    /// (ms): they are in blocks. Returns how many went.
    fn truncate_wbl(&self, end: i64) -> Result<usize> {
        let mut guard = self.shared.wal.lock().unwrap_or_else(|p| p.into_inner());
        let w = guard.as_mut().ok_or_else(wal_closed).map_err(wal_error)?;
        w.wbl.truncate(end).map_err(|e| {
            tracing::warn!(dir = %w.wbl.dir().display(), error = %e, "truncating the WBL failed");
            wal_error(e)
        })
    }

    /// How long ago the newest sample was, against the wall clock (for readiness logs).
    pub fn lag(&self) -> Option<Duration> {
        let max = self.shared.max_time.load(Relaxed);
        (max != i64::MIN).then(|| Duration::from_millis(now_ms().saturating_sub(max).max(0) as u64))
    }
}

fn wal_error(e: WalError) -> Error {
    Error::Wal(e)
}

/// Series records on their way to their core: each one's label hash, ref and where its
/// labels end in `packed`, which holds them packed as the head keeps them. The core makes
/// each series' own copy: made on the reading thread, the copies' fresh pages were half of
/// its time, and the reader is the one thread replay waits on.
#[derive(Default)]
struct ReplaySeries {
    entries: Vec<(u64, u64, u32)>,
    packed: Vec<u8>,
}

impl ReplaySeries {
    /// Adds a WAL series record's series; `hash` is [`hash_series_labels`] of `pairs`.
    fn push(&mut self, hash: u64, r: u64, pairs: &[(&str, &str)]) {
        if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            SeriesLabels::pack_into(&mut self.packed, pairs.iter().copied());
        } else {
            let labels = Labels::from_pairs(pairs.iter().copied());
            let sorted = labels.iter().map(|l| (l.name.as_str(), l.value.as_str()));
            SeriesLabels::pack_into(&mut self.packed, sorted);
        }
        self.entries.push((hash, r, self.packed.len() as u32));
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each series: label hash, ref, packed labels.
    fn iter(&self) -> impl Iterator<Item = (u64, u64, &[u8])> + '_ {
        let mut start = 0;
        self.entries.iter().map(move |&(hash, r, end)| {
            let labels = &self.packed[start..end as usize];
            start = end as usize;
            (hash, r, labels)
        })
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.packed.clear();
    }
}

/// One core's answer to a replay batch, with the batch's buffers emptied for reuse.
type ReplayCall = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<(AppendReport, ReplaySeries, Vec<RefSample>), Canceled>,
            > + Send,
    >,
>;

/// Emptied replay batch buffers.
#[derive(Default)]
struct ReplayBuffers {
    series: Vec<ReplaySeries>,
    samples: Vec<Vec<RefSample>>,
}

/// A buffer for one core's samples of a replay batch, with room for its share of a batch
/// and some skew (reserved, not touched: pages fault in as it fills).
fn replay_samples_buffer(cores: usize) -> Vec<RefSample> {
    Vec::with_capacity(REPLAY_BATCH / cores.max(1) * 5 / 4)
}

/// The hash of a WAL series record's labels as the head keeps them: sorted by name with
/// unique names. Prometheus writes them so; a record written otherwise is put in order first.
fn hash_series_labels(pairs: &[(&str, &str)]) -> u64 {
    if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        crate::labels::hash_pairs(pairs.iter().copied())
    } else {
        let labels = Labels::from_pairs(pairs.iter().copied());
        crate::labels::hash_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }
}

/// Waits for replay batches of `log` and adds up what they stored and dropped.
fn replay_wait(
    calls: Vec<ReplayCall>,
    log: Log,
    report: &mut ReplayReport,
    spare: &mut ReplayBuffers,
) -> Result<()> {
    for r in futures::executor::block_on(join_all(calls)) {
        let (rep, series, samples) = r.map_err(canceled)?;
        spare.series.push(series);
        spare.samples.push(samples);
        report.samples += rep.appended + rep.appended_ooo;
        if log == Log::Wbl {
            report.wbl_samples += rep.appended + rep.appended_ooo;
        }
        report.dropped += rep.too_old + rep.out_of_order + rep.duplicate_timestamp;
    }
    Ok(())
}

/// The number of the segment file at `path`.
fn segment_number(path: &Path) -> Option<u32> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(wal::parse_segment_name)
}

fn wal_closed() -> WalError {
    WalError::InvalidArgument("the WAL is not open (the head is still replaying it)".into())
}

fn canceled(c: Canceled) -> Error {
    Error::Canceled(c)
}

impl Queryable for Head {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        // The series API wants labels only: no sample is decoded for it.
        if hints.func.as_deref() == Some("series") {
            return crate::query::collect_labels(Box::new(self.stream(
                matchers,
                mint,
                maxt,
                HeadRead::Labels,
            )?));
        }
        let slot = self.slot;
        let ms = matchers.to_vec();
        let parts = self.on_cores(move |c| c.with(slot, |s| s.select(&ms, mint, maxt)))?;
        let mut out: Vec<Series> = parts.into_iter().flatten().collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn crate::query::SeriesStream + 'a>> {
        Ok(Box::new(
            self.stream(matchers, mint, maxt, HeadRead::Samples)?
                .cancel_with(hints.cancel.clone()),
        ))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let Some((mint, maxt)) = self.label_window(mint, maxt) else {
            return Ok(Vec::new());
        };
        let slot = self.slot;
        let ms = matchers.to_vec();
        let parts = self.on_cores(move |c| c.with(slot, |s| s.label_names(&ms, mint, maxt)))?;
        let mut out: Vec<String> = parts.into_iter().flatten().collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let Some((mint, maxt)) = self.label_window(mint, maxt) else {
            return Ok(Vec::new());
        };
        let slot = self.slot;
        let ms = matchers.to_vec();
        let name = name.to_string();
        let parts =
            self.on_cores(move |c| c.with(slot, |s| s.label_values(&name, &ms, mint, maxt)))?;
        let mut out: Vec<String> = parts.into_iter().flatten().collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Head {
    /// The window the label APIs read the head's series in: everything when the head's samples
    /// overlap `[mint, maxt]` (ms), else nothing. Prometheus's head, and so Thanos's receiver,
    /// answers label names and values for the head as a whole, as a block does, not series by
    /// series.
    fn label_window(&self, mint: i64, maxt: i64) -> Option<(i64, i64)> {
        let s = &self.shared;
        let (min, max) = (s.min_time.load(Relaxed), s.max_time.load(Relaxed));
        (min <= maxt && max >= mint).then_some((i64::MIN, i64::MAX))
    }
}

/// One core's part of a head cut: its series of the range in label order (`ids`), how many
/// of them have been read (`next`), and the read ones not yet written (`read`).
struct CutRun {
    ids: Vec<(u32, u64)>,
    next: usize,
    read: std::collections::VecDeque<shard::BlockSeries>,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_exemplars;
#[cfg(test)]
mod tests_histogram;
