//! The bucket store: serves the blocks of an object-storage bucket (as Thanos's store gateway
//! does) from small per-block index-headers on local disk, with postings, series and chunks
//! fetched by coalesced ranged reads.
//!
//! The work runs on the engine cores (`crate::shard`): each block is owned by one core, which
//! resolves its postings and keeps its index cache; a large selection is read by every core in
//! parts; FILESYSTEM buckets are read through each core's io_uring ring (or `pread`). Answers
//! are streamed in bounded batches, decoded ([`BucketStore::series_stream`]) or as StoreAPI
//! frames written on the cores ([`BucketStore::series_wire`]).
//!
//! [`BucketStore`] is held in an `Arc` by the gRPC StoreAPI and by PromQL (it implements
//! [`crate::query::Queryable`]); [`BucketStore::sync`] is called periodically.

mod batch;
mod bitpack;
mod block;
mod core;
mod downsampled;
pub mod entry;
mod form;
pub mod header;
mod labels;
pub mod parquet;
pub mod postings;
mod queryable;
mod read;
mod resolve;
mod select;
pub mod selection;
mod series;
mod stream;
mod symbols;
mod sync;
mod wire;

pub use batch::{ChunkView, SeriesBatch};
pub use block::{BucketBlock, RawChunk};
pub use form::StreamBatch;
pub use labels::LabelsQuery;
pub use parquet::{ParquetBlock, ParquetMode};
pub use selection::{BlockSelection, TimeBound};
pub use series::{
    SeriesQuery, SeriesResult, ShardInfo, StoreSeries, encode_batch, merge_chunks, recut_chunks,
};
pub use stream::SeriesStream;
pub use sync::SyncReport;
pub use wire::{FRAME_HEADER, LabelFields, WireBatch, WireForm, WireFraming, put_frame};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ulid::Ulid;

use crate::block::BlockError;
use crate::bucket::{Bucket, BucketError, CacheStats};
use crate::index::IndexError;
use crate::labels::Labels;
use crate::shard::{IoBackend, RuntimeConfig, RuntimeError, ShardSet};

use self::core::{Reader, StoreCore};

/// Budget of the idle buffers of written Series frames the store keeps, bytes. A stream's
/// frames go back to the pool once sent and its producers take them again for their next
/// batches, so few are idle at once: this holds four batches at the largest batch target
/// (8 MiB), enough for two streams to reuse theirs, while buffers given back past it are
/// freed.
const WIRE_POOL_BYTES: u64 = 32 << 20;
/// The largest frame buffer kept for reuse, bytes: a batch at the largest target and the
/// series that overran it.
const WIRE_POOL_BUFFER_MAX: usize = 10 << 20;

/// Keys of the index cache: postings lists (bitpacked) by offset, series entries by ref,
/// symbol pages and postings offset table windows by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// A postings list at this index offset, bitpacked.
    Postings(Ulid, u64),
    /// A series entry with this ref.
    Series(Ulid, u32),
    /// A page of 32 symbols, decoded for lookup.
    Symbols(Ulid, u32),
    /// A window of 32 postings offset table entries, as read from the index.
    PotWindow(Ulid, u32),
}

impl CacheKey {
    /// The block the entry belongs to.
    pub fn block(&self) -> Ulid {
        match *self {
            CacheKey::Postings(b, _)
            | CacheKey::Series(b, _)
            | CacheKey::Symbols(b, _)
            | CacheKey::PotWindow(b, _) => b,
        }
    }
}

/// What a request may cost before it fails with [`StoreError::LimitExceeded`]; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Series per Series call (`--store.limits.request-series`).
    pub series: u64,
    /// Samples per Series call, estimated as chunks × 120 (`--store.limits.request-samples`).
    pub samples: u64,
    /// Bytes of chunks fetched per Series call.
    pub bytes: u64,
}

/// Options of a bucket store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Byte budget of the postings and series cache (`--index-cache-size`), bytes.
    pub index_cache_bytes: u64,
    /// Byte budget of the chunk page cache (`--store.chunk-cache-size`), bytes; 0 = none.
    pub chunk_cache_bytes: u64,
    /// Blocks whose deletion mark is older than this are no longer served.
    pub ignore_deletion_marks_delay: Duration,
    /// Per-request limits.
    pub limits: Limits,
    /// Bytes of series batches one Series call may hold in flight between the cores and the
    /// caller (a few batches per block part), bytes.
    pub stream_buffer_bytes: u64,
    /// The engine cores: how many, pinned or not, and the I/O backend.
    pub runtime: RuntimeConfig,
    /// Which of the bucket's blocks this store serves (a shard's time window and relabel
    /// rules); every block by default.
    pub selection: BlockSelection,
    /// Blocks a sync reads and loads at once (`--block-sync-concurrency`). Each new block
    /// being loaded holds its index's symbol and postings offset tables while its
    /// index-header is built.
    pub block_sync_concurrency: usize,
    /// Which blocks are read from their Parquet shards (`--store.parquet`).
    pub parquet: ParquetMode,
    /// External labels every block is served with in place of its meta's Thanos section: a
    /// sidecar reading Prometheus's own TSDB, whose blocks carry none, serves them with
    /// Prometheus's. `None`: each block's own.
    pub external_labels: Option<crate::labels::Labels>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            index_cache_bytes: 250 * 1024 * 1024,
            chunk_cache_bytes: 128 * 1024 * 1024,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            limits: Limits::default(),
            stream_buffer_bytes: 64 * 1024 * 1024,
            runtime: RuntimeConfig {
                pin: true,
                ..RuntimeConfig::default()
            },
            selection: BlockSelection::default(),
            block_sync_concurrency: DEFAULT_BLOCK_SYNC_CONCURRENCY,
            parquet: ParquetMode::default(),
            external_labels: None,
        }
    }
}

/// Thanos's default for its store gateway's `--block-sync-concurrency`.
pub const DEFAULT_BLOCK_SYNC_CONCURRENCY: usize = 20;

/// A cache's counters over all cores, summed (the index cache or the chunk page cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSnapshot {
    /// Bytes held.
    pub bytes: u64,
    /// Entries held.
    pub items: u64,
    /// Budget of all cores together, bytes.
    pub budget: u64,
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries evicted.
    pub evictions: u64,
}

/// Idle buffers a pool keeps for reuse, against its budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Capacity of the idle buffers, bytes.
    pub idle_bytes: u64,
    /// The most the idle buffers may hold, bytes.
    pub budget_bytes: u64,
}

/// Everything a bucket store request can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The bucket failed a request; the block or request is retried on the next sync or call.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A block's index is corrupt or unsupported; the block is skipped.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A block's meta.json, chunks or markers are corrupt; the block is skipped.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A chunk payload does not decode.
    #[error("block {block}: chunk of series {series}: {source}")]
    Chunk {
        /// Block ULID.
        block: String,
        /// Series labels.
        series: String,
        /// Decoder error.
        source: crate::chunk::ChunkError,
    },
    /// A local file (index-header, data dir) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The request is malformed (bad matcher, reversed time range...); the client must fix it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A request limit was exceeded; the client should narrow the query. The message names
    /// the flag that sets the limit.
    #[error("exceeded {limit} limit ({}): {value} > {max}", limit_flag(limit))]
    LimitExceeded {
        /// Which limit (`series`, `samples`, `bytes`, `concurrent requests`).
        limit: &'static str,
        /// What the request needed (at least).
        value: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A downsampled chunk lacks an aggregate the request asked for, or is corrupt.
    #[error("block {block}: chunk of series {series}: {source}")]
    Aggregate {
        /// Block ULID.
        block: String,
        /// Series labels.
        series: String,
        /// What the aggregate chunk reader found.
        source: crate::chunk::AggrError,
    },
    /// Queried before the first sync finished.
    #[error("store not ready: initial block sync has not finished")]
    NotReady,
    /// The engine cores could not start (io_uring forced but unavailable, threads).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The engine cores stopped while answering (the store is shutting down).
    #[error("engine cores stopped while answering")]
    Stopped,
    /// A Parquet block's files are corrupt or not a Prometheus block; the block is skipped.
    #[error(transparent)]
    Parquet(Box<crate::parquet::ParquetError>),
}

/// The command-line flag that sets a request limit, for error messages.
fn limit_flag(limit: &str) -> &'static str {
    match limit {
        "series" => "--store.limits.request-series",
        "samples" => "--store.limits.request-samples",
        "bytes" => "--store.limits.request-bytes",
        _ => "a store limit",
    }
}

impl StoreError {
    /// What the error means for whoever sent the request: a limit is `Execution`, a bad
    /// request `BadData`, a store not ready or a bucket out of reach `Unavailable`, a damaged
    /// block `Internal`.
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            StoreError::LimitExceeded { .. } => ErrorClass::Execution,
            StoreError::InvalidRequest(_)
            | StoreError::Aggregate {
                source: crate::chunk::AggrError::Missing { .. },
                ..
            } => ErrorClass::BadData,
            // The bucket out of reach; a missing or short object is a damaged block instead.
            StoreError::NotReady
            | StoreError::Stopped
            | StoreError::Bucket(BucketError::Store { .. } | BucketError::Missing { .. }) => {
                ErrorClass::Unavailable
            }
            _ => ErrorClass::Internal,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Counters exported on /metrics.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Block loads that succeeded.
    pub block_loads: AtomicU64,
    /// Block loads that failed (corrupt or unreadable blocks).
    pub block_load_failures: AtomicU64,
    /// Blocks dropped (deleted or marked for deletion).
    pub block_drops: AtomicU64,
    /// Syncs run.
    pub syncs: AtomicU64,
    /// Syncs that failed to list the bucket.
    pub sync_failures: AtomicU64,
    /// Series returned by Series calls.
    pub series_returned: AtomicU64,
    /// Chunks returned by Series calls.
    pub chunks_returned: AtomicU64,
    /// Series calls served.
    pub series_requests: AtomicU64,
    /// Series calls refused by a limit.
    pub limit_refusals: AtomicU64,
    /// Blocks skipped because their label filter ruled out every matching series.
    pub label_filter_excluded: AtomicU64,
    /// Label filters built (or rebuilt after damage) at block load.
    pub label_filter_builds: AtomicU64,
    /// Blocks the last sync left out because they are outside the time window.
    pub time_excluded: AtomicU64,
    /// Blocks the last sync left out because the relabel rules dropped them.
    pub label_excluded: AtomicU64,
}

/// A time range and the external labels of a group of blocks, for Info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSetInfo {
    /// External labels shared by the blocks.
    pub labels: Labels,
    /// Earliest ms served.
    pub min_time: i64,
    /// Latest ms: the newest block's `maxTime` (its exclusive end, as Thanos advertises it),
    /// cut to the store's window.
    pub max_time: i64,
}

/// The counters of per-core caches sharing `budget`, summed.
fn snapshot(stats: &[Arc<CacheStats>], budget: u64) -> CacheSnapshot {
    use std::sync::atomic::Ordering::Relaxed;
    let n = stats.len() as u64;
    let mut s = CacheSnapshot {
        budget: budget / n * n,
        ..CacheSnapshot::default()
    };
    for c in stats {
        s.bytes += c.bytes.load(Relaxed);
        s.items += c.items.load(Relaxed);
        s.hits += c.hits.load(Relaxed);
        s.misses += c.misses.load(Relaxed);
        s.evictions += c.evictions.load(Relaxed);
    }
    s
}

/// The bucket store.
#[derive(Debug)]
pub struct BucketStore {
    bucket: Bucket,
    data_dir: PathBuf,
    opts: StoreOptions,
    cores: Arc<ShardSet<StoreCore>>,
    cache_stats: Vec<Arc<CacheStats>>,
    chunk_cache_stats: Vec<Arc<CacheStats>>,
    blocks: RwLock<Vec<Arc<BucketBlock>>>,
    /// Blocks served from their Parquet shards.
    parquet: RwLock<Vec<Arc<ParquetBlock>>>,
    synced: AtomicBool,
    metrics: Arc<StoreMetrics>,
    runtime: tokio::runtime::Handle,
    /// Buffers of the StoreAPI frames written for Series answers, reused from answer to answer.
    wire_pool: Arc<crate::buffers::BufferPool>,
}

impl BucketStore {
    /// A store over `bucket` keeping index-headers under `data_dir`, starting its engine
    /// cores; serves nothing until [`BucketStore::sync`] has run once. Must be called within a
    /// tokio runtime, which object-storage reads and the synchronous
    /// [`crate::query::Queryable`] methods then use.
    pub fn open(bucket: Bucket, data_dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::InvalidRequest(format!("bucket store needs a tokio runtime: {e}"))
        })?;
        let n = if opts.runtime.cores == 0 {
            crate::shard::allowed_cpus().len().max(1)
        } else {
            opts.runtime.cores
        };
        let cache_stats: Vec<Arc<CacheStats>> = (0..n).map(|_| Arc::default()).collect();
        let reader = Reader {
            bucket: bucket.clone(),
            local_root: bucket.local_root().map(Path::to_path_buf),
            runtime: runtime.clone(),
        };
        let chunk_cache_stats: Vec<Arc<CacheStats>> = (0..n).map(|_| Arc::default()).collect();
        let per_core = [opts.index_cache_bytes, opts.chunk_cache_bytes].map(|b| b / n as u64);
        let stats = [cache_stats.clone(), chunk_cache_stats.clone()];
        let cores = ShardSet::start(
            &RuntimeConfig {
                cores: n,
                name: "gauntlet-store".into(),
                ..opts.runtime.clone()
            },
            move |core| {
                let budgets = [0, 1].map(|k| (per_core[k], stats[k][core].clone()));
                StoreCore::new(budgets, reader.clone())
            },
        )?;
        Ok(BucketStore {
            bucket,
            data_dir: data_dir.to_path_buf(),
            cores: Arc::new(cores),
            cache_stats,
            chunk_cache_stats,
            opts,
            blocks: RwLock::new(Vec::new()),
            parquet: RwLock::new(Vec::new()),
            synced: AtomicBool::new(false),
            metrics: Arc::default(),
            runtime,
            wire_pool: Arc::new(crate::buffers::BufferPool::new(
                WIRE_POOL_BYTES,
                WIRE_POOL_BUFFER_MAX,
            )),
        })
    }

    /// Whether the first sync has finished.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Relaxed)
    }

    /// The loaded blocks, sorted by min time then ULID.
    pub fn blocks(&self) -> Vec<Arc<BucketBlock>> {
        self.blocks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counters for /metrics.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// The index caches of every core, summed.
    pub fn cache_stats(&self) -> CacheSnapshot {
        snapshot(&self.cache_stats, self.opts.index_cache_bytes)
    }

    /// The chunk page caches of every core, summed.
    pub fn chunk_cache_stats(&self) -> CacheSnapshot {
        snapshot(&self.chunk_cache_stats, self.opts.chunk_cache_bytes)
    }

    /// The read buffers the engine cores keep for reuse, all cores together.
    pub fn read_pool_stats(&self) -> PoolSnapshot {
        PoolSnapshot {
            idle_bytes: self.cores.read_pool_idle_bytes(),
            budget_bytes: self.cores.read_pool_budget(),
        }
    }

    /// The buffers of written Series frames the store keeps for reuse.
    pub fn wire_pool_stats(&self) -> PoolSnapshot {
        PoolSnapshot {
            idle_bytes: self.wire_pool.idle_bytes(),
            budget_bytes: self.wire_pool.budget(),
        }
    }

    /// The I/O backend the engine cores read with.
    pub fn io_backend(&self) -> IoBackend {
        self.cores.backend()
    }

    /// Calls waiting in each engine core's queue, by core.
    pub fn core_queue_depths(&self) -> Vec<usize> {
        self.cores.queue_depths()
    }

    /// Number of engine cores.
    pub fn cores(&self) -> usize {
        self.cores.cores()
    }

    /// Has each of the store's cores run `hook` once idle (see
    /// [`crate::shard::ShardSet::set_idle_hook`]).
    pub fn set_idle_hook(&self, hook: crate::shard::IdleHook) {
        self.cores.set_idle_hook(hook);
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.opts.limits
    }

    /// Which blocks this store serves.
    pub fn selection(&self) -> &BlockSelection {
        &self.opts.selection
    }

    /// `[mint, maxt]` cut to the store's time window now (possibly empty: min > max).
    pub(crate) fn clamp_to_window(&self, mint: i64, maxt: i64) -> (i64, i64) {
        self.opts.selection.clamp(mint, maxt, selection::now_ms())
    }

    /// One entry per distinct external label set: the set and the time range of its blocks,
    /// cut to the store's time window. Errors until the first sync has finished.
    pub fn label_sets(&self) -> Result<Vec<LabelSetInfo>, StoreError> {
        if !self.is_ready() {
            return Err(StoreError::NotReady);
        }
        let (min, max) = self.opts.selection.window(selection::now_ms());
        let mut out: Vec<LabelSetInfo> = Vec::new();
        // A block's range as its meta.json has it, the exclusive end included, as Thanos's
        // store advertises it (`BucketStore.TimeRange`): queriers show and log these numbers.
        let tsdb = self.blocks();
        let parquet = self.parquet_blocks();
        let spans = tsdb
            .iter()
            .map(|b| (&b.ext_labels, b.meta.min_time, b.meta.max_time))
            .chain(
                parquet
                    .iter()
                    .map(|b| (&b.ext_labels, b.meta.min_time, b.meta.max_time)),
            );
        for (ext, lo, hi) in spans {
            match out.iter_mut().find(|i| i.labels == *ext) {
                Some(i) => {
                    i.min_time = i.min_time.min(lo);
                    i.max_time = i.max_time.max(hi);
                }
                None => out.push(LabelSetInfo {
                    labels: ext.clone(),
                    min_time: lo,
                    max_time: hi,
                }),
            }
        }
        // A shard advertises only the part of its blocks' range inside its window.
        for i in &mut out {
            i.min_time = i.min_time.max(min);
            i.max_time = i.max_time.min(max);
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

#[cfg(test)]
mod filter_resolution_tests;
#[cfg(test)]
mod tests;
