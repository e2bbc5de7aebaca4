//! The sidecar's StoreAPI and Info: the persisted blocks of Prometheus's TSDB directory read
//! directly, by the engine's bucket store over the directory as a FILESYSTEM bucket (every
//! core reads, and writes the answer's frames), the head through Prometheus's remote read from
//! the end of the newest block on; the head's series are merged into the blocks' stream by
//! labels, the chunks at the boundary taken once, every series with Prometheus's external
//! labels. Label names and values come from Prometheus's HTTP API.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::labels::{Labels, external_matchers};
use gauntlet_engine::query::{StreamSeries, without_labels};
use gauntlet_engine::shard::RuntimeConfig;
use gauntlet_engine::store::{BucketStore, SeriesQuery, StoreOptions, StoreSeries, WireFraming};
use gauntlet_proto::thanos;
use tonic::body::Body;
use tonic::{Request, Response, Status};

use super::prometheus::{PromClient, PromError};
use crate::grpc::convert;
use crate::grpc::store::{
    Held, Hints, RawSeries, message_answer, read_series_request, series_query, wire_answer,
};
use crate::receive::store::series_chunks;

/// Bytes of postings and symbol pages the sidecar's block store caches over all cores.
const INDEX_CACHE_BYTES: u64 = 32 << 20;
/// Bytes of chunk pages the sidecar's block store caches over all cores (small selections
/// only; large ones read through the page cache).
const CHUNK_CACHE_BYTES: u64 = 32 << 20;

/// What the sidecar knows of its Prometheus, kept fresh by the heartbeat.
#[derive(Debug)]
pub struct PromState {
    /// The client of Prometheus.
    pub client: PromClient,
    /// Prometheus's TSDB directory (`--tsdb.path`).
    pub tsdb_path: PathBuf,
    /// Bound on each HTTP call but remote read.
    pub timeout: Duration,
    /// Bound on a remote read.
    pub read_timeout: Duration,
    /// Prometheus's external labels, as last read.
    external: RwLock<Labels>,
    /// Whether the last heartbeat reached Prometheus.
    up: AtomicBool,
    /// When Prometheus was last asked, ms since the epoch (0: not yet).
    last_check_ms: AtomicI64,
    /// The lowest timestamp Prometheus holds, ms, as last read.
    min_time: AtomicI64,
    /// The persisted blocks as served, once a Series call or the heartbeat opened them.
    served: tokio::sync::Mutex<Option<ServedBlocks>>,
    /// Where the block store keeps its index-headers: a directory of the system's temporary
    /// directory named after the TSDB path, so a restarted sidecar finds them again.
    index_dir: PathBuf,
    /// Series calls answered, and those that failed because Prometheus did not answer.
    pub series_requests: AtomicU64,
    /// Series calls refused or failed because Prometheus was unreachable.
    pub series_unavailable: AtomicU64,
    /// Persisted blocks served, as of the last sync.
    pub blocks_served: AtomicU64,
}

impl PromState {
    /// State for the Prometheus `client` talks to, over the TSDB in `tsdb_path`; down until
    /// [`PromState::refresh`] reaches it.
    pub fn new(
        client: PromClient,
        tsdb_path: PathBuf,
        timeout: Duration,
        read_timeout: Duration,
    ) -> Self {
        PromState {
            client,
            index_dir: index_dir(&tsdb_path),
            tsdb_path,
            timeout,
            read_timeout,
            external: RwLock::new(Labels::empty()),
            up: AtomicBool::new(false),
            last_check_ms: AtomicI64::new(0),
            min_time: AtomicI64::new(i64::MIN),
            served: tokio::sync::Mutex::new(None),
            series_requests: AtomicU64::new(0),
            series_unavailable: AtomicU64::new(0),
            blocks_served: AtomicU64::new(0),
        }
    }

    /// Reads the lowest timestamp and the external labels; on failure Prometheus is marked
    /// down (Info and Series refuse until a refresh succeeds).
    pub async fn refresh(&self) -> Result<(), PromError> {
        let res = async {
            let min = self.client.lowest_timestamp(self.timeout).await?;
            let ext = self.client.external_labels(self.timeout).await?;
            Ok::<_, PromError>((min, ext))
        }
        .await;
        self.last_check_ms.store(crate::now_ms(), Relaxed);
        match res {
            Ok((min, ext)) => {
                self.min_time.store(min, Relaxed);
                *self.external.write().unwrap_or_else(|p| p.into_inner()) = ext;
                if !self.up.swap(true, Relaxed) {
                    tracing::info!(prometheus = %self.client.url(), external_labels = %self.external(), "Prometheus is up");
                }
                Ok(())
            }
            Err(e) => {
                if self.up.swap(false, Relaxed) {
                    tracing::warn!(error = %e, "Prometheus is down; Info and Series refuse until it answers");
                }
                Err(e)
            }
        }
    }

    /// Where the block store keeps its index-headers.
    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// When Prometheus was last asked, ms since the epoch (0: not yet).
    pub fn last_check_ms(&self) -> i64 {
        self.last_check_ms.load(Relaxed)
    }

    /// Whether the last heartbeat reached Prometheus.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Prometheus's external labels, as last read.
    pub fn external(&self) -> Labels {
        self.external
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `Unavailable` unless the last heartbeat reached Prometheus.
    fn require_up(&self) -> Result<(), Status> {
        if self.is_up() {
            return Ok(());
        }
        Err(Status::unavailable(format!(
            "Prometheus at {} is not reachable (sidecar not ready)",
            self.client.url()
        )))
    }

    /// The bucket store over the persisted blocks of the TSDB directory: synced when the set
    /// of block directories changed since the last call, opened anew when Prometheus's
    /// external labels changed (every block is served with them). A block that cannot be
    /// loaded (Prometheus deleting it at that moment) is left out and logged by the sync; a
    /// block another holds whole (compacted, its sources not yet deleted) is not served.
    pub async fn block_store(&self) -> Result<Arc<BucketStore>, Status> {
        let external = self.external();
        let names = block_names(&self.tsdb_path);
        let mut served = self.served.lock().await;
        if let Some(s) = served.as_mut().filter(|s| s.external == external) {
            if s.names != names {
                sync_blocks(&s.store).await;
                self.blocks_served
                    .store(s.store.blocks().len() as u64, Relaxed);
                s.names = names;
            }
            return Ok(s.store.clone());
        }
        let cfg = BucketConfig::filesystem(&self.tsdb_path)
            .map_err(|e| Status::internal(format!("the TSDB directory as a bucket: {e}")))?;
        let bucket =
            Bucket::open(&cfg).map_err(|e| Status::internal(format!("opening {cfg:?}: {e}")))?;
        let opts = StoreOptions {
            index_cache_bytes: INDEX_CACHE_BYTES,
            chunk_cache_bytes: CHUNK_CACHE_BYTES,
            external_labels: Some(external.clone()),
            // Prometheus runs on the same machine: the cores are not pinned.
            runtime: RuntimeConfig {
                pin: false,
                ..RuntimeConfig::default()
            },
            ..StoreOptions::default()
        };
        let store = BucketStore::open(bucket, &self.index_dir, opts)
            .map(Arc::new)
            .map_err(|e| Status::internal(format!("opening the persisted blocks: {e}")))?;
        sync_blocks(&store).await;
        self.blocks_served
            .store(store.blocks().len() as u64, Relaxed);
        tracing::info!(blocks = store.blocks().len(), index_dir = %self.index_dir.display(), external_labels = %external, "serving the persisted blocks");
        *served = Some(ServedBlocks {
            external,
            names,
            store: store.clone(),
        });
        Ok(store)
    }
}

/// The persisted blocks as the sidecar serves them.
#[derive(Debug)]
struct ServedBlocks {
    /// The external labels every block is served with.
    external: Labels,
    /// The block directories when the store last synced.
    names: Vec<String>,
    store: Arc<BucketStore>,
}

/// Brings `store` in line with the TSDB directory; on a failure to list it, the blocks loaded
/// before keep being served.
async fn sync_blocks(store: &BucketStore) {
    match store.sync().await {
        Ok(r) if r.added + r.dropped > 0 => tracing::info!(
            loaded = r.loaded,
            added = r.added,
            dropped = r.dropped,
            "persisted blocks synced"
        ),
        Ok(r) => tracing::debug!(loaded = r.loaded, "persisted blocks synced; no change"),
        Err(e) => {
            tracing::warn!(error = %e, "listing the TSDB directory failed; serving the blocks loaded before")
        }
    }
}

/// The index-header directory of the sidecar over `tsdb_path`.
fn index_dir(tsdb_path: &Path) -> PathBuf {
    let path = std::fs::canonicalize(tsdb_path).unwrap_or_else(|_| tsdb_path.to_path_buf());
    let hash = xxhash_rust::xxh64::xxh64(path.as_os_str().as_encoded_bytes(), 0);
    std::env::temp_dir().join(format!("gauntlet-sidecar-{hash:016x}"))
}

/// Names of the block directories in `dir`: ULIDs with a `meta.json` (Prometheus writes a
/// block under `<ulid>.tmp-for-creation` and renames it when whole), sorted.
pub fn block_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| ulid::Ulid::from_string(n).is_ok() && dir.join(n).join("meta.json").is_file())
        .collect();
    out.sort();
    out
}

/// A gRPC status for a failed call to Prometheus.
pub(super) fn prom_status(e: PromError) -> Status {
    match e {
        PromError::Unreachable { .. } => Status::unavailable(e.to_string()),
        PromError::BadAnswer { .. } => Status::internal(e.to_string()),
        PromError::OverBudget(why) => crate::memory::refusal(&why),
    }
}

/// The StoreAPI and Info service of the sidecar.
#[derive(Debug, Clone)]
pub struct SidecarStore {
    state: Arc<PromState>,
    budget: Arc<gauntlet_engine::budget::MemoryBudget>,
}

impl SidecarStore {
    /// Serves what `state` knows, frames waiting to be sent reserved from `budget`.
    pub fn new(state: Arc<PromState>, budget: Arc<gauntlet_engine::budget::MemoryBudget>) -> Self {
        SidecarStore { state, budget }
    }
}

/// What a Series call reads once Prometheus has answered for the head.
struct SeriesPlan {
    /// The store over the persisted blocks.
    store: Arc<BucketStore>,
    /// What the answer holds until it is sent: the store (its cores write the answer) and
    /// the head's memory reservation.
    held: Held,
    query: SeriesQuery,
    /// The head's series from remote read, as served (external labels set, the request's
    /// replica labels taken off, in the request's shard), sorted.
    head: Vec<StoreSeries>,
}

impl SidecarStore {
    /// Checks a Series call and asks Prometheus for the head's part: the head is asked only
    /// for what no persisted block holds, from the end of the newest block (exclusive there,
    /// so its chunks are not read twice). `None` when an external label rules Prometheus out
    /// (an empty answer).
    async fn plan(&self, req: thanos::SeriesRequest) -> Result<Option<SeriesPlan>, Status> {
        let state = &self.state;
        state.series_requests.fetch_add(1, Relaxed);
        if let Err(s) = state.require_up() {
            state.series_unavailable.fetch_add(1, Relaxed);
            return Err(s);
        }
        if req.matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        let query = series_query(req, &self.budget).await?;
        let external = state.external();
        let Some(own) = external_matchers(&external, &query.matchers) else {
            return Ok(None);
        };
        let store = state.block_store().await?;
        let persisted_end = store
            .blocks()
            .iter()
            .map(|b| b.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);
        let head_start = query.min_time.max(persisted_end);
        // The head is read whole before it is merged: Prometheus streams it sorted by its
        // own labels, and the external labels set and the replica labels taken off here can
        // move a series anywhere in that order. It is held in the memory budget until the
        // answer is sent.
        let mut hold = self.budget.empty("Series");
        let head = if head_start <= query.max_time {
            match state
                .client
                .remote_read(
                    &own,
                    (head_start, query.max_time),
                    state.read_timeout,
                    &mut hold,
                )
                .await
            {
                Ok(h) => h,
                Err(e) => {
                    if matches!(e, PromError::Unreachable { .. }) {
                        state.series_unavailable.fetch_add(1, Relaxed);
                    }
                    return Err(prom_status(e));
                }
            }
        } else {
            Vec::new()
        };
        let head = served_head(head, &external, &query)?;
        Ok(Some(SeriesPlan {
            held: Arc::new((store.clone(), hold)),
            store,
            query,
            head,
        }))
    }
}

/// The head's series as the blocks' are served: Prometheus's external labels set again (it
/// adds its own to what it streams; these are the ones this sidecar advertises), the
/// request's replica labels taken off, only those of the request's shard (hashed as sent, as
/// Thanos's sidecar hashes them), chunks in time order, sorted by labels.
fn served_head(
    head: Vec<StreamSeries>,
    external: &Labels,
    q: &SeriesQuery,
) -> Result<Vec<StoreSeries>, Status> {
    let mut out = Vec::with_capacity(head.len());
    for s in head {
        let labels = without_labels(&s.labels.with_external(external), &q.without_replica_labels);
        if q.shard.as_ref().is_some_and(|sh| !sh.matches(&labels)) {
            continue;
        }
        let chunks = if q.skip_chunks {
            Vec::new()
        } else {
            series_chunks(&labels, s.data)?
        };
        out.push(StoreSeries { labels, chunks });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    // Taking replica labels off may leave two series with one label set: one is kept, with
    // the chunks of both.
    out.dedup_by(|b, a| {
        let same = a.labels == b.labels;
        if same {
            a.chunks.append(&mut b.chunks);
        }
        same
    });
    for s in &mut out {
        if s.chunks.len() > 1 && s.chunks.windows(2).any(|w| w[1].min_time <= w[0].max_time) {
            s.chunks = gauntlet_engine::store::merge_chunks(std::mem::take(&mut s.chunks))
                .map_err(|e| Status::internal(format!("series {}: {e}", s.labels)))?;
        }
    }
    Ok(out)
}

impl RawSeries for SidecarStore {
    /// The raw-frame Series: the blocks' series written as gRPC frames on the engine cores,
    /// as the store gateway writes its own, the head's merged in; one HTTP/2 data frame per
    /// batch, the status in the trailers.
    async fn start_series(&self, req: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let req = read_series_request(req.into_body()).await?;
        let framing = WireFraming::for_request(req.response_batch_size);
        let Some(plan) = self.plan(req).await? else {
            // No series: the status alone (a trailers-only answer).
            return Ok(Status::ok("").into_http());
        };
        let mut stream = plan
            .store
            .series_wire(&plan.query, framing)
            .await
            .map_err(convert::status)?;
        stream.add_sorted(plan.head);
        Ok(wire_answer(stream, &self.budget, Hints::Off, plan.held))
    }
}

type WireStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<thanos::SeriesResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl thanos::store_server::Store for SidecarStore {
    async fn info(
        &self,
        _req: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        self.state.require_up()?;
        let ext = self.state.external();
        Ok(Response::new(thanos::InfoResponse {
            labels: convert::labels(&ext),
            min_time: self.state.min_time.load(Relaxed),
            max_time: i64::MAX,
            store_type: thanos::StoreType::Sidecar as i32,
            label_sets: vec![thanos::LabelSet {
                labels: convert::labels(&ext),
            }],
        }))
    }

    type SeriesStream = WireStream;

    async fn series(
        &self,
        req: Request<thanos::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        // Mounted through `StoreApi`, Series is answered by `start_series`; this path serves
        // the generated server used alone, with the same answer as prost messages.
        let req = req.into_inner();
        let batch_size = req.response_batch_size;
        let Some(plan) = self.plan(req).await? else {
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        };
        let mut stream = plan
            .store
            .series_stream(&plan.query)
            .await
            .map_err(convert::status)?;
        stream.add_sorted(plan.head);
        Ok(Response::new(message_answer(
            stream,
            &self.budget,
            batch_size,
            Hints::Off,
            plan.held,
        )))
    }

    async fn label_names(
        &self,
        req: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let state = &self.state;
        state.require_up()?;
        let r = req.into_inner();
        let matchers = convert::matchers(r.matchers.clone(), &self.budget).await?;
        let ext = state.external();
        let Some(own) = external_matchers(&ext, &matchers) else {
            return Ok(Response::new(thanos::LabelNamesResponse::default()));
        };
        let own = if matchers.is_empty() { Vec::new() } else { own };
        let mut names = state
            .client
            .label_names(&own, r.start, r.end, state.timeout)
            .await
            .map_err(prom_status)?;
        if !names.is_empty() {
            names.extend(ext.iter().map(|l| l.name.to_string()));
        }
        names.sort();
        names.dedup();
        names.retain(|n| !r.without_replica_labels.contains(n));
        if r.limit > 0 {
            names.truncate(r.limit as usize);
        }
        Ok(Response::new(thanos::LabelNamesResponse {
            names,
            warnings: Vec::new(),
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        req: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        let state = &self.state;
        state.require_up()?;
        let r = req.into_inner();
        let matchers = convert::matchers(r.matchers.clone(), &self.budget).await?;
        let ext = state.external();
        let Some(own) = external_matchers(&ext, &matchers) else {
            return Ok(Response::new(thanos::LabelValuesResponse::default()));
        };
        let own = if matchers.is_empty() { Vec::new() } else { own };
        let mut values = match ext.get(&r.label) {
            // An external label has one value on every series.
            Some(v) => {
                let names = state
                    .client
                    .label_names(&own, r.start, r.end, state.timeout)
                    .await
                    .map_err(prom_status)?;
                if names.is_empty() {
                    Vec::new()
                } else {
                    vec![v.to_string()]
                }
            }
            None => state
                .client
                .label_values(&r.label, &own, r.start, r.end, state.timeout)
                .await
                .map_err(prom_status)?,
        };
        values.sort();
        values.dedup();
        if r.limit > 0 {
            values.truncate(r.limit as usize);
        }
        Ok(Response::new(thanos::LabelValuesResponse {
            values,
            warnings: Vec::new(),
            hints: None,
        }))
    }
}

#[tonic::async_trait]
impl thanos::info::info_server::Info for SidecarStore {
    async fn info(
        &self,
        _req: Request<thanos::info::InfoRequest>,
    ) -> Result<Response<thanos::info::InfoResponse>, Status> {
        self.state.require_up()?;
        let set = convert::InfoSet {
            labels: self.state.external(),
            min_time: self.state.min_time.load(Relaxed),
            max_time: i64::MAX,
        };
        // Exemplars, metadata, targets and rules come from Prometheus's API; advertised as
        // Thanos's sidecar advertises them (its exemplars info carries no time range).
        let mut info = convert::info_response("sidecar", &[set], true);
        info.exemplars = Some(thanos::info::ExemplarsInfo::default());
        info.metric_metadata = Some(thanos::info::MetricMetadataInfo {});
        info.targets = Some(thanos::info::TargetsInfo {});
        info.rules = Some(thanos::info::RulesInfo {});
        Ok(Response::new(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_block_directories_are_blocks() {
        let d = tempfile::tempdir().unwrap();
        let id = ulid::Ulid::new().to_string();
        for name in [
            id.clone(),
            format!("{id}.tmp-for-creation"),
            "wal".to_string(),
            "chunks_head".to_string(),
        ] {
            std::fs::create_dir(d.path().join(&name)).unwrap();
            std::fs::write(d.path().join(&name).join("meta.json"), "{}").unwrap();
        }
        let other = ulid::Ulid::new().to_string();
        std::fs::create_dir(d.path().join(&other)).unwrap();
        assert_eq!(block_names(d.path()), vec![id]);
    }
}
