//! `thanos.Store` (Series, LabelNames, LabelValues, legacy Info) and `thanos.info.Info` served
//! from a [`BucketStore`], each read held to the caller's tenant when tenancy is enforced
//! ([`crate::query::tenancy`]).

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::store::{
    BucketStore, FRAME_HEADER, LabelsQuery, SeriesBatch, SeriesQuery, SeriesStream as EngineStream,
    StreamBatch, WireBatch, WireFraming, put_frame,
};
use gauntlet_proto::hintspb;
use gauntlet_proto::thanos::{self, series_response};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Request, Response, Status};

use super::convert;
use crate::memory::SendError;
use crate::query::tenancy::{Tenancy, scope_call};

/// Largest Series request body read, bytes.
const MAX_SERIES_REQUEST_BYTES: usize = 4 << 20;

/// The StoreAPI and Info service over one bucket store.
#[derive(Debug, Clone)]
pub struct StoreService {
    store: Arc<BucketStore>,
    series_gate: Arc<Semaphore>,
    max_concurrent: usize,
    /// The tenancy every Series, LabelNames and LabelValues call is held to.
    tenancy: Option<Tenancy>,
    /// What the calls' matchers and answers waiting to be sent reserve.
    budget: Arc<MemoryBudget>,
}

impl StoreService {
    /// Serves `store`, refusing Series calls beyond `max_concurrent` in flight (0 = no limit).
    pub fn new(store: Arc<BucketStore>, max_concurrent: usize) -> Self {
        let permits = if max_concurrent == 0 {
            Semaphore::MAX_PERMITS
        } else {
            max_concurrent
        };
        StoreService {
            store,
            series_gate: Arc::new(Semaphore::new(permits)),
            max_concurrent,
            tenancy: None,
            budget: MemoryBudget::unlimited(),
        }
    }

    /// The budget the service reserves from.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// The same service reserving from `budget`, the role's (without it: a budget of its own
    /// without a limit).
    pub fn with_budget(mut self, budget: &Arc<MemoryBudget>) -> Self {
        self.budget = Arc::clone(budget);
        self
    }

    /// The same service with every read held to the caller's tenant (`None`: not held).
    pub fn with_tenancy(mut self, tenancy: Option<Tenancy>) -> Self {
        self.tenancy = tenancy;
        self
    }

    fn label_sets(&self) -> Result<Vec<gauntlet_engine::store::LabelSetInfo>, Status> {
        self.store.label_sets().map_err(convert::status)
    }

    /// The blocks a Series answer to the tenant `headers` name may list in its hints: that
    /// tenant's, by their external labels (`None`: every block, tenancy is off).
    fn visible_blocks(&self, headers: &http::HeaderMap) -> Result<Option<HashSet<String>>, Status> {
        let Some(t) = &self.tenancy else {
            return Ok(None);
        };
        let tenant = t.tenant_of(headers).map_err(Status::invalid_argument)?;
        let mine =
            |ext: &gauntlet_engine::labels::Labels| ext.get(&t.label) == Some(tenant.as_str());
        let tsdb = self.store.blocks();
        let parquet = self.store.parquet_blocks();
        Ok(Some(
            tsdb.iter()
                .filter(|b| mine(&b.ext_labels))
                .map(|b| b.id().to_string())
                .chain(
                    parquet
                        .iter()
                        .filter(|b| mine(&b.ext_labels))
                        .map(|b| b.id().to_string()),
                )
                .collect(),
        ))
    }
}

fn any<M: Message>(name: &str, m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{name}"),
        value: m.encode_to_vec(),
    }
}

/// Min and max time over label sets (MaxInt64/MinInt64 when there are none, as Thanos).
fn time_range(sets: &[gauntlet_engine::store::LabelSetInfo]) -> (i64, i64) {
    if sets.is_empty() {
        return (i64::MAX, i64::MIN);
    }
    (
        sets.iter().map(|s| s.min_time).min().unwrap_or(i64::MAX),
        sets.iter().map(|s| s.max_time).max().unwrap_or(i64::MIN),
    )
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<thanos::SeriesResponse, Status>> + Send>>;

/// What a streamed Series answer keeps until its producer is done and its body is dropped:
/// the call's concurrency permit, or the store whose cores write it.
pub(crate) type Held = Arc<dyn std::any::Any + Send + Sync>;

/// Which hints end a Series answer.
#[derive(Debug)]
pub(crate) enum Hints {
    /// The blocks queried, of those only the visible ones when given.
    Blocks(Option<HashSet<String>>),
    /// None (a sidecar, as Thanos's, sends none).
    Off,
}

/// A Series response stream holding what the answer needs kept (see [`Held`]): released when
/// tonic drops the stream (after the last frame, or when the client goes away).
struct Permitted<S> {
    frames: S,
    _held: Held,
}

impl<S: Stream + Unpin> Stream for Permitted<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.frames).poll_next(cx)
    }
}

/// The engine query a Series request asks for; a bad matcher is `InvalidArgument`.
pub(crate) async fn series_query(
    mut r: thanos::SeriesRequest,
    budget: &Arc<MemoryBudget>,
) -> Result<SeriesQuery, Status> {
    let aggregates = convert::aggregates(&r.aggregates)?;
    Ok(SeriesQuery {
        min_time: r.min_time,
        max_time: r.max_time,
        matchers: convert::matchers(std::mem::take(&mut r.matchers), budget).await?,
        skip_chunks: r.skip_chunks,
        without_replica_labels: r.without_replica_labels,
        shard: convert::shard_info(r.shard_info.take()),
        limit: r.limit.max(0) as u64,
        abort_on_error: convert::abort(r.partial_response_strategy, r.partial_response_disabled),
        max_resolution_window: r.max_resolution_window,
        aggregates,
        every_resolution: false,
        whole_blocks: false,
    })
}

/// The frames that end a Series answer: one warning per block that failed, then the hints
/// `hints` asks for.
fn trailing_messages<B: StreamBatch>(
    stream: &mut EngineStream<B>,
    hints: &Hints,
) -> Vec<thanos::SeriesResponse> {
    let mut out: Vec<thanos::SeriesResponse> = std::mem::take(&mut stream.warnings)
        .into_iter()
        .map(|w| thanos::SeriesResponse {
            result: Some(series_response::Result::Warning(w)),
        })
        .collect();
    let Hints::Blocks(visible) = hints else {
        return out;
    };
    if let Some(v) = visible {
        stream.queried_blocks.retain(|id| v.contains(id));
    }
    let hints = hintspb::SeriesResponseHints {
        queried_blocks: std::mem::take(&mut stream.queried_blocks)
            .into_iter()
            .map(|id| hintspb::Block { id })
            .collect(),
        ..Default::default()
    };
    out.push(thanos::SeriesResponse {
        result: Some(series_response::Result::Hints(any(
            "hintspb.SeriesResponseHints",
            &hints,
        ))),
    });
    out
}

/// Sends `stream` as a raw Series answer: each batch the engine cores wrote as one HTTP/2 data
/// frame, held in `budget` while queued; then the warnings and `hints`; then the status in the
/// trailers. A client that cancels drops the body and with it the frames' receiver: the
/// producer stops then, not after the batch it is waiting for, and dropping the stream ends
/// the cores' work on it.
pub(crate) fn wire_answer(
    mut stream: EngineStream<WireBatch>,
    budget: &Arc<MemoryBudget>,
    hints: Hints,
    held: Held,
) -> http::Response<Body> {
    let (tx, frames) =
        crate::memory::frame_channel::<Result<Frame<Bytes>, Status>>(budget, "Series", 4);
    let producer_held = held.clone();
    tokio::spawn(async move {
        let _held = producer_held;
        let status = loop {
            let next = tokio::select! {
                biased;
                () = tx.closed() => return,
                next = stream.next_batch() => next,
            };
            match next {
                Ok(Some(batch)) => {
                    let frames = batch.into_frames();
                    let bytes = frames.len() as u64;
                    match tx.send(Ok(Frame::data(frames)), bytes).await {
                        Ok(()) => {}
                        Err(SendError::Closed) => return,
                        Err(SendError::OverBudget(why)) => break crate::memory::refusal(&why),
                    }
                }
                Ok(None) => break Status::ok(""),
                Err(e) => break convert::status(e),
            }
        };
        if status.code() == tonic::Code::Ok {
            let mut out = Vec::new();
            for m in trailing_messages(&mut stream, &hints) {
                put_frame(&m.encode_to_vec(), &mut out);
            }
            if !out.is_empty() && tx.send(Ok(Frame::data(Bytes::from(out))), 0).await.is_err() {
                return;
            }
        }
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_ok() {
            tx.finish(Ok(Frame::trailers(trailers))).await;
        }
    });
    grpc_response(Permitted {
        frames: Box::pin(frames),
        _held: held,
    })
}

/// Sends `stream` as a Series answer of prost messages, `batch_size` series per message (as
/// the request's `response_batch_size` asks), each held in `budget` while queued; then the
/// warnings and `hints`. Cancellation as in [`wire_answer`].
pub(crate) fn message_answer(
    mut stream: EngineStream<SeriesBatch>,
    budget: &Arc<MemoryBudget>,
    batch_size: i64,
    hints: Hints,
    held: Held,
) -> SeriesStream {
    let (tx, frames) = crate::memory::frame_channel(budget, "Series", 16);
    let producer_held = held.clone();
    tokio::spawn(async move {
        let _held = producer_held;
        loop {
            let next = tokio::select! {
                biased;
                () = tx.closed() => return,
                next = stream.next_batch() => next,
            };
            match next {
                Ok(Some(batch)) => {
                    let series = (0..batch.len())
                        .map(|i| convert::batch_series(&batch, i))
                        .collect();
                    for frame in convert::series_responses(series, batch_size) {
                        let bytes = frame.encoded_len() as u64;
                        match tx.send(Ok(frame), bytes).await {
                            Ok(()) => {}
                            Err(SendError::Closed) => return,
                            Err(SendError::OverBudget(why)) => {
                                tx.finish(Err(crate::memory::refusal(&why))).await;
                                return;
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tx.finish(Err(convert::status(e))).await;
                    return;
                }
            }
        }
        for frame in trailing_messages(&mut stream, &hints) {
            if tx.send(Ok(frame), 0).await.is_err() {
                return;
            }
        }
    });
    Box::pin(Permitted {
        frames: Box::pin(frames),
        _held: held,
    })
}

/// The `SeriesRequest` a raw gRPC call's body holds: one uncompressed frame. A Series request
/// is a few matchers and hints; a body past [`MAX_SERIES_REQUEST_BYTES`] is refused before it
/// is held in memory (tonic's default decoding limit is the same).
pub(crate) async fn read_series_request(body: Body) -> Result<thanos::SeriesRequest, Status> {
    let body = http_body_util::Limited::new(body, MAX_SERIES_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| {
            Status::invalid_argument(format!(
                "reading the request (at most {MAX_SERIES_REQUEST_BYTES} bytes): {e}"
            ))
        })?
        .to_bytes();
    let msg = match body.get(..FRAME_HEADER) {
        Some([0, a, b, c, d]) => {
            let n = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            body.get(FRAME_HEADER..FRAME_HEADER + n).ok_or_else(|| {
                Status::invalid_argument("request frame is shorter than its length")
            })?
        }
        Some(_) => {
            return Err(Status::unimplemented(
                "compressed requests are not supported; send Series requests uncompressed",
            ));
        }
        None => return Err(Status::invalid_argument("empty request")),
    };
    thanos::SeriesRequest::decode(msg)
        .map_err(|e| Status::invalid_argument(format!("decoding SeriesRequest: {e}")))
}

/// A gRPC answer whose body is `frames` (data frames, then the trailers).
pub(crate) fn grpc_response<S>(frames: S) -> http::Response<Body>
where
    S: Stream<Item = Result<Frame<Bytes>, Status>> + Send + 'static,
{
    let mut resp = http::Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// A StoreAPI whose `Series` is answered at the HTTP level, as raw gRPC frames.
pub trait RawSeries: thanos::store_server::Store + Clone {
    /// Answers `/thanos.Store/Series`: data frames and the status in the trailers, or the
    /// status of a call refused before its first frame (which [`StoreApi`] sends as the whole
    /// answer).
    fn start_series(
        &self,
        req: http::Request<Body>,
    ) -> impl std::future::Future<Output = Result<http::Response<Body>, Status>> + Send;
}

impl StoreService {
    fn permit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.series_gate.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "exceeded concurrent Series calls limit (--store.grpc.series-max-concurrency) of {}",
                self.max_concurrent
            ))
        })
    }
}

impl RawSeries for StoreService {
    /// The request decoded with prost, the answer written as gRPC frames straight from the
    /// engine's batches, a batch per HTTP/2 data frame, the status in the trailers.
    async fn start_series(&self, req: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let permit = self.permit()?;
        let (parts, body) = req.into_parts();
        let mut r = read_series_request(body).await?;
        // The call's gRPC metadata are its HTTP/2 headers.
        scope_call(self.tenancy.as_ref(), &parts.headers, &mut r.matchers)?;
        let visible = self.visible_blocks(&parts.headers)?;
        let framing = WireFraming::for_request(r.response_batch_size);
        let q = series_query(r, &self.budget).await?;
        // The engine cores write the series as frames; only batches merging several blocks
        // are written by the stream here.
        let stream = self
            .store
            .series_wire(&q, framing)
            .await
            .map_err(convert::status)?;
        // As in `series`: the permit is held until the producer is done and the body stream
        // holding its queued frames is dropped.
        Ok(wire_answer(
            stream,
            &self.budget,
            Hints::Blocks(visible),
            Arc::new(permit),
        ))
    }
}

/// `thanos.Store` as mounted on the gRPC server: `Series` answered by raw frames
/// ([`RawSeries::start_series`]), everything else by the generated server.
#[derive(Debug, Clone)]
pub struct StoreApi<S = StoreService> {
    svc: S,
    inner: thanos::store_server::StoreServer<S>,
}

impl<S: RawSeries> StoreApi<S> {
    /// The StoreAPI over `svc`.
    pub fn new(svc: S) -> Self {
        StoreApi {
            inner: thanos::store_server::StoreServer::new(svc.clone())
                .max_decoding_message_size(i32::MAX as usize)
                .max_encoding_message_size(i32::MAX as usize),
            svc,
        }
    }
}

impl<S> tonic::server::NamedService for StoreApi<S> {
    const NAME: &'static str = "thanos.Store";
}

impl<S: RawSeries> tonic::codegen::Service<http::Request<Body>> for StoreApi<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == "/thanos.Store/Series" {
            let svc = self.svc.clone();
            return Box::pin(async move {
                Ok(svc
                    .start_series(req)
                    .await
                    .unwrap_or_else(|status| status.into_http()))
            });
        }
        Box::pin(self.inner.call(req))
    }
}

#[tonic::async_trait]
impl thanos::store_server::Store for StoreService {
    async fn info(
        &self,
        _req: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        let sets = self.label_sets()?;
        let (min_time, max_time) = time_range(&sets);
        Ok(Response::new(thanos::InfoResponse {
            labels: Vec::new(),
            min_time,
            max_time,
            store_type: thanos::StoreType::Store as i32,
            label_sets: sets
                .iter()
                .map(|s| thanos::LabelSet {
                    labels: convert::labels(&s.labels),
                })
                .collect(),
        }))
    }

    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        req: Request<thanos::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        // Mounted through [`StoreApi`], Series is answered by `start_series`; this path serves
        // the generated server used alone, with the same answer as prost messages.
        let permit = self.permit()?;
        let (metadata, _, mut req) = req.into_parts();
        scope_call(self.tenancy.as_ref(), metadata.as_ref(), &mut req.matchers)?;
        let visible = self.visible_blocks(metadata.as_ref())?;
        let batch_size = req.response_batch_size;
        let q = series_query(req, &self.budget).await?;
        let stream = self
            .store
            .series_stream(&q)
            .await
            .map_err(convert::status)?;
        // The call counts against the concurrency limit until both the producer has finished
        // and the frames it queued have been handed to the transport (or the call is dropped).
        Ok(Response::new(message_answer(
            stream,
            &self.budget,
            batch_size,
            Hints::Blocks(visible),
            Arc::new(permit),
        )))
    }

    async fn label_names(
        &self,
        req: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let (metadata, _, mut r) = req.into_parts();
        scope_call(self.tenancy.as_ref(), metadata.as_ref(), &mut r.matchers)?;
        let q = LabelsQuery {
            min_time: r.start,
            max_time: r.end,
            matchers: convert::matchers(std::mem::take(&mut r.matchers), &self.budget).await?,
            without_replica_labels: r.without_replica_labels,
            limit: r.limit.max(0) as u64,
            whole_blocks: false,
        };
        let names = self.store.label_names(&q).await.map_err(convert::status)?;
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
        let (metadata, _, mut r) = req.into_parts();
        scope_call(self.tenancy.as_ref(), metadata.as_ref(), &mut r.matchers)?;
        let q = LabelsQuery {
            min_time: r.start,
            max_time: r.end,
            matchers: convert::matchers(std::mem::take(&mut r.matchers), &self.budget).await?,
            without_replica_labels: r.without_replica_labels,
            limit: r.limit.max(0) as u64,
            whole_blocks: false,
        };
        let values = self
            .store
            .label_values(&r.label, &q)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(thanos::LabelValuesResponse {
            values,
            warnings: Vec::new(),
            hints: None,
        }))
    }
}

#[tonic::async_trait]
impl thanos::info::info_server::Info for StoreService {
    async fn info(
        &self,
        _req: Request<thanos::info::InfoRequest>,
    ) -> Result<Response<thanos::info::InfoResponse>, Status> {
        let sets: Vec<convert::InfoSet> = self
            .label_sets()?
            .into_iter()
            .map(|s| convert::InfoSet {
                labels: s.labels,
                min_time: s.min_time,
                max_time: s.max_time,
            })
            .collect();
        Ok(Response::new(convert::info_response("store", &sets, true)))
    }
}
