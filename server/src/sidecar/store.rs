//! The sidecar's StoreAPI and Info: the persisted blocks of Prometheus's TSDB directory read
//! directly, the head through Prometheus's remote read from the end of the newest block on,
//! the two merged by labels with the chunks at the boundary taken once, every series with
//! Prometheus's external labels. Label names and values come from Prometheus's HTTP API.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use gauntlet_engine::block::Block;
use gauntlet_engine::labels::{Labels, external_matchers};
use gauntlet_engine::query::{
    BATCH_SERIES, LocalBlocks, SeriesStream, StreamSeries, merge_streams, with_external_labels,
};
use gauntlet_engine::store::{ShardInfo, WireBatch, WireFraming};
use gauntlet_proto::thanos;
use http_body::Frame;
use tonic::body::Body;
use tonic::{Request, Response, Status};

use super::prometheus::{PromClient, PromError};
use crate::grpc::convert;
use crate::grpc::store::{RawSeries, grpc_response, read_series_request};
use crate::memory::SendError;
use crate::query::shard::ShardStream;
use crate::receive::store::{push_wire_series, send_series};

/// Frames of a Series answer made and waiting to be sent, at most.
const SERIES_FRAMES_QUEUED: usize = 4;

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
    /// The blocks last opened, with the directory names they were opened from.
    blocks: Mutex<(Vec<String>, Arc<LocalBlocks>)>,
    /// Series calls answered, and those that failed because Prometheus did not answer.
    pub series_requests: AtomicU64,
    /// Series calls refused or failed because Prometheus was unreachable.
    pub series_unavailable: AtomicU64,
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
            tsdb_path,
            timeout,
            read_timeout,
            external: RwLock::new(Labels::empty()),
            up: AtomicBool::new(false),
            last_check_ms: AtomicI64::new(0),
            min_time: AtomicI64::new(i64::MIN),
            blocks: Mutex::new((Vec::new(), Arc::new(LocalBlocks::from_blocks(Vec::new())))),
            series_requests: AtomicU64::new(0),
            series_unavailable: AtomicU64::new(0),
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

    /// The persisted blocks of the TSDB directory, reopened when the set of block
    /// directories changed since the last call. A block that cannot be opened (Prometheus
    /// deleting it at that moment) is left out and logged.
    pub fn blocks(&self) -> Arc<LocalBlocks> {
        let names = block_names(&self.tsdb_path);
        let mut cached = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 == names {
            return cached.1.clone();
        }
        let mut open = Vec::with_capacity(names.len());
        for n in &names {
            match Block::open(&self.tsdb_path.join(n)) {
                Ok(b) => open.push(b),
                Err(e) => tracing::warn!(block = %n, error = %e, "block not served"),
            }
        }
        tracing::debug!(blocks = open.len(), "persisted blocks reopened");
        *cached = (names, Arc::new(LocalBlocks::from_blocks(open)));
        cached.1.clone()
    }
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
    }
}

/// Series already in memory, handed out [`BATCH_SERIES`] at a time.
struct Listed(std::vec::IntoIter<StreamSeries>);

impl SeriesStream for Listed {
    fn next_batch(&mut self) -> gauntlet_engine::Result<Option<Vec<StreamSeries>>> {
        let batch: Vec<StreamSeries> = self.0.by_ref().take(BATCH_SERIES).collect();
        Ok((!batch.is_empty()).then_some(batch))
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
    blocks: Arc<LocalBlocks>,
    /// The call's matchers without those the external labels answer.
    own: Vec<gauntlet_engine::labels::Matcher>,
    external: Labels,
    /// The head's series from remote read, external labels set, sorted.
    head: Vec<StreamSeries>,
    mint: i64,
    maxt: i64,
    /// The request's shard: only its series are sent, hashed as they are sent (external
    /// labels set, the request's replica labels taken off), as Thanos's sidecar hashes them.
    shard: Option<ShardInfo>,
    without_replica_labels: Vec<String>,
}

impl SeriesPlan {
    /// The persisted blocks' series and the head's, merged by labels, every one with the
    /// external labels. Blocking: it reads the blocks.
    fn stream(self) -> gauntlet_engine::Result<Box<dyn SeriesStream>> {
        let persisted = self.blocks.stream(&self.own, self.mint, self.maxt)?;
        let merged = merge_streams(
            vec![
                with_external_labels(persisted, self.external),
                Box::new(Listed(self.head.into_iter())),
            ],
            self.mint,
            self.maxt,
        );
        Ok(ShardStream::wrap(
            merged,
            self.shard,
            self.without_replica_labels,
        ))
    }
}

impl SidecarStore {
    /// Checks a Series call and asks Prometheus for the head's part: the head is asked only
    /// for what no persisted block holds, from the end of the newest block (exclusive there,
    /// so its chunks are not read twice). `None` when an external label rules Prometheus out
    /// (an empty answer).
    async fn plan(&self, req: &thanos::SeriesRequest) -> Result<Option<SeriesPlan>, Status> {
        let state = &self.state;
        state.series_requests.fetch_add(1, Relaxed);
        if let Err(s) = state.require_up() {
            state.series_unavailable.fetch_add(1, Relaxed);
            return Err(s);
        }
        if req.matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        let matchers = convert::matchers(req.matchers.clone(), &self.budget).await?;
        let external = state.external();
        let (mint, maxt) = (req.min_time, req.max_time);
        let Some(own) = external_matchers(&external, &matchers) else {
            return Ok(None);
        };
        let blocks = state.blocks();
        let persisted_end = blocks
            .blocks()
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .unwrap_or(i64::MIN);
        let head_start = mint.max(persisted_end);
        let mut head = if head_start <= maxt {
            match state
                .client
                .remote_read(&own, head_start, maxt, state.read_timeout)
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
        // Prometheus adds its external labels to what it streams; they are set again here so
        // both parts carry the labels this sidecar advertises.
        for s in &mut head {
            s.labels = s.labels.with_external(&external);
        }
        head.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Some(SeriesPlan {
            blocks,
            own,
            external,
            head,
            mint,
            maxt,
            shard: convert::shard_info(req.shard_info.clone()),
            without_replica_labels: req.without_replica_labels.clone(),
        }))
    }
}

impl RawSeries for SidecarStore {
    /// The raw-frame Series: each merged batch written straight into gRPC frames (as the
    /// store gateway writes its own), one HTTP/2 data frame per batch, the status in the
    /// trailers.
    async fn start_series(&self, req: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let req = read_series_request(req.into_body()).await?;
        let plan = self.plan(&req).await?;
        let (tx, frames) = crate::memory::frame_channel::<Result<Frame<Bytes>, Status>>(
            &self.budget,
            "Series",
            SERIES_FRAMES_QUEUED,
        );
        let framing = WireFraming::for_request(req.response_batch_size);
        let (strip, skip_chunks) = (req.without_replica_labels, req.skip_chunks);
        tokio::task::spawn_blocking(move || {
            let sent = (|| -> Result<bool, Status> {
                let Some(plan) = plan else {
                    return Ok(true);
                };
                let mut series = plan.stream().map_err(convert::engine_status)?;
                while let Some(batch) = series.next_batch().map_err(convert::engine_status)? {
                    let mut wire = WireBatch::new(framing);
                    for s in batch {
                        push_wire_series(&mut wire, s, &strip, skip_chunks)?;
                    }
                    let frames = wire.into_frames();
                    let bytes = frames.len() as u64;
                    match tx.blocking_send(Ok(Frame::data(frames)), bytes) {
                        Ok(()) => {}
                        Err(SendError::Closed) => return Ok(false),
                        Err(SendError::OverBudget(why)) => {
                            return Err(crate::memory::refusal(&why));
                        }
                    }
                }
                Ok(true)
            })();
            let status = match sent {
                Ok(true) => Status::ok(""),
                Ok(false) => return,
                Err(status) => status,
            };
            let mut trailers = http::HeaderMap::new();
            if status.add_header(&mut trailers).is_ok() {
                tx.blocking_finish(Ok(Frame::trailers(trailers)));
            }
        });
        Ok(grpc_response(frames))
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
        let plan = self.plan(&req).await?;
        let (tx, frames) =
            crate::memory::frame_channel(&self.budget, "Series", SERIES_FRAMES_QUEUED);
        let Some(plan) = plan else {
            drop(tx);
            return Ok(Response::new(Box::pin(frames)));
        };
        let (strip, skip_chunks) = (req.without_replica_labels, req.skip_chunks);
        let batch_size = req.response_batch_size;
        tokio::task::spawn_blocking(move || {
            let sent = (|| -> Result<(), Status> {
                let mut series = plan.stream().map_err(convert::engine_status)?;
                while let Some(batch) = series.next_batch().map_err(convert::engine_status)? {
                    if !send_series(&tx, batch, &strip, skip_chunks, batch_size)? {
                        return Ok(());
                    }
                }
                Ok(())
            })();
            if let Err(status) = sent {
                tx.blocking_finish(Err(status));
            }
        });
        Ok(Response::new(Box::pin(frames)))
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
