//! The querier's read path: a request fans out to every endpoint that may hold matching data,
//! in parallel and each within a timeout; the answers are decoded to samples, merged by label
//! set and, with dedup on, replicas are folded with the penalty algorithm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_engine::budget::{MemoryBudget, Reservation};
use gauntlet_engine::chunk::{Encoding, HistogramBatch, SampleBatch, decode_xor_into};
use gauntlet_engine::downsample::{AggrRead, ServedChunk, decode_chunks, resolution_for};
use gauntlet_engine::error::{RemoteError, RemoteErrorKind};
use gauntlet_engine::labels::{Labels, MatchType, Matcher};
use gauntlet_engine::query::{
    BATCH_SERIES, Cancel, Queryable, SelectHints, Series, SeriesChunk, SeriesData, SeriesStream,
    StreamSeries, VecStream, decode_histogram_chunk_into, dedup_replicas_with_histograms,
    merge_samples,
};
use gauntlet_engine::store::ShardInfo;
use gauntlet_engine::{Error, Result};
use gauntlet_proto::thanos::{
    self, AggrChunk, LabelMatcher, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy,
    SeriesRequest, label_matcher,
};
use tokio::runtime::Handle;

use super::endpoints::{Endpoint, EndpointInfo, EndpointSet};
use super::series_merge::{Call, MergeError, SeriesMerge};
use super::{ReadOptions, ReadView, Source};

/// Series per Series answer message asked of endpoints, as Thanos's querier asks by default;
/// endpoints that do not batch send one series per message.
const SERIES_RESPONSE_BATCH: i64 = 64;

/// A querier over a set of StoreAPI endpoints.
#[derive(Debug)]
pub struct Querier {
    endpoints: Arc<EndpointSet>,
    runtime: Handle,
    replica_labels: Vec<String>,
    endpoint_timeout: Duration,
    /// What the answers being merged and decoded reserve.
    budget: Arc<MemoryBudget>,
}

impl Querier {
    /// A querier over `endpoints`, running its RPCs on `runtime`; `replica_labels` are
    /// `--query.replica-label`; each endpoint call gets at most `endpoint_timeout`.
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: Handle,
        replica_labels: Vec<String>,
        endpoint_timeout: Duration,
    ) -> Self {
        Querier {
            endpoints,
            runtime,
            replica_labels,
            endpoint_timeout,
            budget: MemoryBudget::unlimited(),
        }
    }

    /// This querier reserving the answers it merges and decodes from `budget`, the role's
    /// (without it: a budget of its own without a limit).
    pub fn with_budget(mut self, budget: &Arc<MemoryBudget>) -> Self {
        self.budget = Arc::clone(budget);
        self
    }

    /// The budget the querier's answers reserve from.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// The endpoint set.
    pub fn endpoints(&self) -> &Arc<EndpointSet> {
        &self.endpoints
    }

    /// The longest an endpoint may keep a call waiting for its answer (for a Series call, for
    /// each message of it): `--store.response-timeout`.
    pub fn endpoint_timeout(&self) -> Duration {
        self.endpoint_timeout
    }
}

impl Source for Arc<Querier> {
    fn view(&self, opts: &ReadOptions) -> Result<Arc<dyn ReadView>> {
        let replica_labels = if opts.dedup {
            opts.replica_labels
                .clone()
                .unwrap_or_else(|| self.replica_labels.clone())
        } else {
            Vec::new()
        };
        Ok(Arc::new(QuerierView {
            querier: self.clone(),
            opts: opts.clone(),
            replica_labels,
            warnings: Mutex::new(Vec::new()),
        }))
    }
}

/// One request's view through the querier.
#[derive(Debug)]
pub struct QuerierView {
    querier: Arc<Querier>,
    opts: ReadOptions,
    /// Labels to deduplicate along; empty when dedup is off.
    replica_labels: Vec<String>,
    warnings: Mutex<Vec<String>>,
}

/// A request's shard as the StoreAPI carries it.
fn to_proto_shard(s: &ShardInfo) -> thanos::ShardInfo {
    thanos::ShardInfo {
        shard_index: s.index as i64,
        total_shards: s.total as i64,
        by: s.by,
        labels: s.labels.clone(),
    }
}

fn remote_error(endpoint: &str, kind: RemoteErrorKind, msg: impl std::fmt::Display) -> Error {
    Error::Remote(RemoteError {
        endpoint: endpoint.to_string(),
        kind,
        message: msg.to_string(),
    })
}

/// A chunk in an endpoint's answer that does not decode; the answers are merged before they
/// are decoded, so which endpoint sent it is not known.
fn undecodable(msg: impl std::fmt::Display) -> Error {
    remote_error("a StoreAPI answer", RemoteErrorKind::Internal, msg)
}

/// What an endpoint's gRPC status means for the request. An endpoint over its memory budget
/// is unavailable for now (a 503 when partial responses are off), not a limit the query hit.
pub(super) fn status_kind(status: &tonic::Status) -> RemoteErrorKind {
    if crate::memory::refused_by_budget(status) {
        return RemoteErrorKind::Unavailable;
    }
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Aborted => RemoteErrorKind::Unavailable,
        tonic::Code::DeadlineExceeded => RemoteErrorKind::Timeout,
        tonic::Code::ResourceExhausted => RemoteErrorKind::LimitExceeded,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => RemoteErrorKind::InvalidRequest,
        _ => RemoteErrorKind::Internal,
    }
}

/// Matchers as the StoreAPI carries them.
pub fn to_proto_matchers(matchers: &[Matcher]) -> Vec<LabelMatcher> {
    matchers
        .iter()
        .map(|m| LabelMatcher {
            r#type: match m.typ {
                MatchType::Equal => label_matcher::Type::Eq,
                MatchType::NotEqual => label_matcher::Type::Neq,
                MatchType::Regexp => label_matcher::Type::Re,
                MatchType::NotRegexp => label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

impl QuerierView {
    fn strategy(&self) -> i32 {
        if self.opts.partial_response {
            PartialResponseStrategy::Warn as i32
        } else {
            PartialResponseStrategy::Abort as i32
        }
    }

    fn warn(&self, w: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    /// An endpoint failed: a warning when partial responses are allowed, else the error.
    fn endpoint_failed(&self, addr: &str, kind: RemoteErrorKind, msg: String) -> Result<()> {
        if self.opts.partial_response {
            self.warn(format!("endpoint {addr}: {msg}"));
            Ok(())
        } else {
            Err(remote_error(addr, kind, msg))
        }
    }

    /// One endpoint's answer, given within `timeout`; its failure otherwise, as
    /// [`QuerierView::endpoint_failed`] takes it (`None` when it became a warning).
    fn answered<T>(
        &self,
        addr: &str,
        timeout: Duration,
        res: std::result::Result<
            std::result::Result<T, tonic::Status>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<Option<T>> {
        let (kind, msg) = match res {
            Ok(Ok(answer)) => return Ok(Some(answer)),
            Ok(Err(status)) => (status_kind(&status), status.message().to_string()),
            Err(_) => (
                RemoteErrorKind::Timeout,
                format!("no answer within {timeout:?}"),
            ),
        };
        self.endpoint_failed(addr, kind, msg).map(|()| None)
    }

    fn targets(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Vec<(Arc<Endpoint>, EndpointInfo)> {
        self.querier.endpoints.select(mint, maxt, matchers)
    }

    /// Starts the Series calls to every endpoint that may hold matching data, at the
    /// resolution and with the aggregates `hints` call for (Thanos's querier rules), merged by
    /// labels as the answers arrive.
    fn open_merge(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        skip_chunks: bool,
        hints: &SelectHints,
    ) -> SeriesMerge {
        let func = hints.func.as_deref();
        let aggregates: Vec<i32> = AggrRead::for_func(func)
            .aggregates()
            .iter()
            .map(|a| a.storeapi())
            .collect();
        let max_resolution_window =
            resolution_for(self.opts.max_resolution_ms, func, hints.range_ms);
        let calls = self
            .targets(mint, maxt, matchers)
            .into_iter()
            .map(|(ep, info)| Call {
                req: SeriesRequest {
                    min_time: mint,
                    max_time: maxt,
                    matchers: to_proto_matchers(matchers),
                    max_resolution_window,
                    aggregates: aggregates.clone(),
                    partial_response_disabled: !self.opts.partial_response,
                    partial_response_strategy: self.strategy(),
                    skip_chunks,
                    without_replica_labels: if info.supports_without_replica_labels {
                        self.replica_labels.clone()
                    } else {
                        Vec::new()
                    },
                    response_batch_size: SERIES_RESPONSE_BATCH,
                    shard_info: self.opts.shard.as_ref().map(to_proto_shard),
                    ..SeriesRequest::default()
                },
                resort: !info.supports_without_replica_labels,
                shard: self.opts.shard.clone().filter(|_| !info.supports_sharding),
                ep,
            })
            .collect();
        SeriesMerge::start(
            &self.querier.runtime,
            calls,
            self.replica_labels.clone(),
            self.querier.endpoint_timeout,
            self.opts.partial_response,
            &self.querier.budget,
        )
    }

    /// Moves what a merge met (endpoints' warnings, failed endpoints) into the warnings.
    fn take_notes(&self, merge: &mut SeriesMerge) {
        for w in merge.take_warnings() {
            self.warn(w);
        }
        for f in merge.take_failures() {
            self.warn(format!("endpoint {}: {}", f.addr, f.message));
        }
    }

    /// One label set's series from every endpoint, decoded, merged and deduplicated: each
    /// member's chunks as lanes, the lanes merged (dedup off) or folded with the penalty
    /// algorithm (dedup on). `None` when no sample is left in `[mint, maxt]`. The decoded
    /// samples are reserved in `held` (16 bytes each).
    #[allow(clippy::too_many_arguments)]
    fn decode_group(
        &self,
        labels: Labels,
        members: Vec<(usize, Vec<AggrChunk>)>,
        mint: i64,
        maxt: i64,
        read: AggrRead,
        skip_chunks: bool,
        held: &mut Reservation,
    ) -> Result<Option<Series>> {
        if skip_chunks {
            return Ok(Some(Series {
                labels,
                ..Series::default()
            }));
        }
        let mut lanes: Vec<Lane> = Vec::new();
        for (_, chunks) in members {
            let decoded = decode_lanes(chunks, mint, maxt, read)?;
            let n: usize = decoded
                .iter()
                .map(|l| l.floats.len() + 16 * l.histograms.len())
                .sum();
            held.grow(16 * n as u64)?;
            lanes.extend(decoded);
        }
        let lanes: Vec<(&SampleBatch, &HistogramBatch)> =
            lanes.iter().map(|l| (&l.floats, &l.histograms)).collect();
        let (samples, histograms) = if self.replica_labels.is_empty() {
            let floats: Vec<&SampleBatch> = lanes.iter().map(|l| l.0).collect();
            let hists: Vec<&HistogramBatch> = lanes.iter().map(|l| l.1).collect();
            (merge_samples(&floats), HistogramBatch::merge(&hists))
        } else {
            dedup_replicas_with_histograms(&lanes, read == AggrRead::Counter)
        };
        let s = Series {
            labels,
            samples,
            histograms,
        };
        Ok((!s.is_empty()).then_some(s))
    }

    /// One label set's series for a stream: its raw chunks as they came, for the consumer to
    /// decode on its own threads, when they form one run without overlaps (one endpoint's
    /// series, or, with dedup off, copies that hold the same or disjoint chunks), where
    /// decoding alone gives what [`QuerierView::decode_group`] gives; otherwise decoded here.
    #[allow(clippy::too_many_arguments)]
    fn stream_series(
        &self,
        labels: Labels,
        members: Vec<(usize, Vec<AggrChunk>)>,
        mint: i64,
        maxt: i64,
        read: AggrRead,
        held: &mut Reservation,
    ) -> Result<Option<StreamSeries>> {
        if (members.len() == 1 || self.replica_labels.is_empty())
            && let Some(chunks) = one_raw_run(&members)
        {
            let chunks: Vec<SeriesChunk> = chunks
                .into_iter()
                .filter(|c| c.max_time >= mint && c.min_time <= maxt)
                .collect();
            return Ok((!chunks.is_empty()).then(|| StreamSeries {
                labels,
                data: SeriesData::Chunks(chunks),
            }));
        }
        let s = self.decode_group(labels, members, mint, maxt, read, false, held)?;
        Ok(s.map(StreamSeries::from))
    }

    fn label_fanout<F, Fut>(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        call: F,
    ) -> Result<Vec<String>>
    where
        F: Fn(Arc<Endpoint>) -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<(Vec<String>, Vec<String>), tonic::Status>,
            >,
    {
        let targets = self.targets(mint, maxt, matchers);
        let timeout = self.querier.endpoint_timeout;
        let calls = targets.into_iter().map(|(ep, _)| {
            let fut = call(ep.clone());
            async move { (ep.addr.clone(), tokio::time::timeout(timeout, fut).await) }
        });
        let results = self
            .querier
            .runtime
            .block_on(futures::future::join_all(calls));
        let mut out: Vec<String> = Vec::new();
        for (addr, res) in results {
            if let Some((values, warnings)) = self.answered(&addr, timeout, res)? {
                out.extend(values);
                for w in warnings {
                    self.warn(w);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// One run of a series' chunks that do not overlap, decoded: float samples and native
/// histogram samples, each sorted by time.
#[derive(Debug, Default)]
struct Lane {
    floats: SampleBatch,
    histograms: HistogramBatch,
}

/// A series' chunks as non-overlapping runs ("lanes"), each decoded and cut to `[mint, maxt]`.
/// Overlapping chunks within one series come from different replicas' blocks (or from blocks
/// of two resolutions), so each lane is treated as a replica of its own. Raw chunks decode as
/// they are (XOR into floats, native histogram chunks into histograms); downsampled ones
/// (aggregates only) are read as `read` says.
fn decode_lanes(
    mut chunks: Vec<AggrChunk>,
    mint: i64,
    maxt: i64,
    read: AggrRead,
) -> Result<Vec<Lane>> {
    sort_distinct(&mut chunks);
    let mut lanes: Vec<(i64, Vec<AggrChunk>)> = Vec::new();
    for c in chunks {
        let end = c.max_time;
        match lanes
            .iter_mut()
            .find(|(last_end, _)| *last_end < c.min_time)
        {
            Some(lane) => {
                lane.0 = end;
                lane.1.push(c);
            }
            None => lanes.push((end, vec![c])),
        }
    }
    let mut out = Vec::with_capacity(lanes.len());
    for (_, chunks) in lanes {
        let mut lane = Lane::default();
        decode_lane(&chunks, read, &mut lane)?;
        lane.floats.truncate_to_range(mint, maxt);
        lane.histograms.truncate_to_range(mint, maxt);
        if !lane.floats.is_empty() || !lane.histograms.is_empty() {
            out.push(lane);
        }
    }
    Ok(out)
}

/// Sorts a series' chunks by time; identical chunks (two stores serving the same block) count
/// once.
fn sort_distinct<C: std::borrow::Borrow<AggrChunk>>(chunks: &mut Vec<C>) {
    chunks.sort_by_key(|c| (c.borrow().min_time, c.borrow().max_time));
    chunks.dedup_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        a.min_time == b.min_time
            && a.max_time == b.max_time
            && chunk_payloads(a) == chunk_payloads(b)
    });
}

/// The chunks of a label set's members as one run for [`SeriesData::Chunks`], when they are
/// all raw chunks of an encoding PromQL decodes and, sorted and with duplicates dropped, none
/// overlaps the next: then [`decode_lanes`] would make one lane of them, and merging or
/// deduplicating one lane leaves it as it is.
fn one_raw_run(members: &[(usize, Vec<AggrChunk>)]) -> Option<Vec<SeriesChunk>> {
    use thanos::chunk::Encoding as Wire;
    let mut all: Vec<&AggrChunk> = members.iter().flat_map(|m| &m.1).collect();
    sort_distinct(&mut all);
    if all.windows(2).any(|w| w[0].max_time >= w[1].min_time) {
        return None;
    }
    all.into_iter()
        .map(|c| {
            let raw = c.raw.as_ref()?;
            let encoding = match Wire::try_from(raw.r#type).ok()? {
                Wire::Xor => Encoding::Xor,
                Wire::Histogram => Encoding::Histogram,
                Wire::FloatHistogram => Encoding::FloatHistogram,
            };
            Some(SeriesChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: encoding as u8,
                data: raw.data.clone(),
            })
        })
        .collect()
}

/// The payloads of a wire chunk, for duplicate detection.
fn chunk_payloads(c: &AggrChunk) -> [Option<&[u8]>; 6] {
    [&c.raw, &c.count, &c.sum, &c.min, &c.max, &c.counter].map(data)
}

fn data(p: &Option<thanos::Chunk>) -> Option<&[u8]> {
    p.as_ref().map(|p| &p.data[..])
}

/// Decodes one lane's chunks (sorted, not overlapping) into `out`.
fn decode_lane(lane: &[AggrChunk], read: AggrRead, out: &mut Lane) -> Result<()> {
    use thanos::chunk::Encoding as Wire;
    if lane.iter().all(|c| c.raw.is_some()) {
        for c in lane {
            let Some(raw) = c.raw.as_ref() else { continue };
            let fail = |e| undecodable(format!("chunk [{}, {}]: {e}", c.min_time, c.max_time));
            match Wire::try_from(raw.r#type) {
                Ok(Wire::Xor) => {
                    decode_xor_into(&raw.data, &mut out.floats).map_err(fail)?;
                }
                Ok(Wire::Histogram) => {
                    decode_histogram_chunk_into(
                        Encoding::Histogram as u8,
                        &raw.data,
                        &mut out.histograms,
                    )
                    .map_err(fail)?;
                }
                Ok(Wire::FloatHistogram) => {
                    decode_histogram_chunk_into(
                        Encoding::FloatHistogram as u8,
                        &raw.data,
                        &mut out.histograms,
                    )
                    .map_err(fail)?;
                }
                Err(_) => {
                    return Err(undecodable(format!(
                        "chunk [{}, {}]: unknown chunk type {}",
                        c.min_time, c.max_time, raw.r#type
                    )));
                }
            }
        }
        return Ok(());
    }
    let served: Vec<ServedChunk<'_>> = lane
        .iter()
        .map(|c| ServedChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            raw: data(&c.raw),
            aggr: [
                data(&c.count),
                data(&c.sum),
                data(&c.min),
                data(&c.max),
                data(&c.counter),
            ],
        })
        .collect();
    decode_chunks(&served, read, &mut out.floats).map_err(undecodable)
}

impl Queryable for QuerierView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        // `/api/v1/series` only needs label sets.
        let skip_chunks = hints.func.as_deref() == Some("series");
        let read = AggrRead::for_func(hints.func.as_deref());
        let mut merge = self.open_merge(mint, maxt, matchers, skip_chunks, hints);
        let mut held = self.querier.budget.empty("query");
        let mut out = Vec::new();
        let all = async {
            while let Some((labels, members)) = merge.next_group().await.map_err(merge_error)? {
                let s =
                    self.decode_group(labels, members, mint, maxt, read, skip_chunks, &mut held)?;
                out.extend(s);
            }
            Ok(())
        };
        let res = self.querier.runtime.block_on(async {
            tokio::select! {
                r = all => r,
                why = super::interrupted(&hints.cancel) => Err(Error::Interrupted(why)),
            }
        });
        self.take_notes(&mut merge);
        res.map(|()| out)
    }

    /// The merge of the endpoints' answers, a batch at a time: series go on as they are
    /// merged, with their chunks still encoded where the consumer's decoding gives the same
    /// samples, so PromQL decodes them on its workers.
    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        if hints.func.as_deref() == Some("series") {
            return Ok(Box::new(VecStream::new(
                self.select(matchers, mint, maxt, hints)?,
            )));
        }
        Ok(Box::new(QuerierStream {
            view: self,
            merge: self.open_merge(mint, maxt, matchers, false, hints),
            mint,
            maxt,
            read: AggrRead::for_func(hints.func.as_deref()),
            cancel: hints.cancel.clone(),
            held: self.querier.budget.empty("query"),
            done: false,
        }))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let strategy = self.strategy();
        let names = self.label_fanout(mint, maxt, matchers, |ep| {
            let req = LabelNamesRequest {
                partial_response_disabled: !self.opts.partial_response,
                partial_response_strategy: strategy,
                start: mint,
                end: maxt,
                matchers: to_proto_matchers(matchers),
                without_replica_labels: self.replica_labels.clone(),
                ..LabelNamesRequest::default()
            };
            async move {
                let r = ep.store().label_names(req).await?.into_inner();
                Ok((r.names, r.warnings))
            }
        })?;
        Ok(names
            .into_iter()
            .filter(|n| !self.replica_labels.contains(n))
            .collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let strategy = self.strategy();
        self.label_fanout(mint, maxt, matchers, |ep| {
            let req = LabelValuesRequest {
                label: name.to_string(),
                partial_response_disabled: !self.opts.partial_response,
                partial_response_strategy: strategy,
                start: mint,
                end: maxt,
                matchers: to_proto_matchers(matchers),
                without_replica_labels: self.replica_labels.clone(),
                ..LabelValuesRequest::default()
            };
            async move {
                let r = ep.store().label_values(req).await?.into_inner();
                Ok((r.values, r.warnings))
            }
        })
    }
}

/// What a merge's end means for the request.
fn merge_error(e: MergeError) -> Error {
    match e {
        MergeError::Endpoint(f) => remote_error(&f.addr, f.kind, f.message),
        MergeError::OverBudget(why) => Error::OverBudget(why),
    }
}

/// [`QuerierView::select_stream`]'s stream. The evaluator's workers take batches from it one
/// at a time; the merge runs on the caller's thread, the endpoints' reads on the runtime.
struct QuerierStream<'a> {
    view: &'a QuerierView,
    merge: SeriesMerge,
    mint: i64,
    maxt: i64,
    read: AggrRead,
    cancel: Cancel,
    /// Samples decoded here for the batch last handed over (replicas deduplicated, aggregates
    /// read), until the next batch is asked for.
    held: Reservation,
    done: bool,
}

impl SeriesStream for QuerierStream<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        self.held = self.view.querier.budget.empty("query");
        let mut batch = Vec::new();
        // Every group of a batch may lose all its samples to the range: read on until one
        // is kept or the merge ends.
        while batch.is_empty() && !self.done {
            let (merge, cancel) = (&mut self.merge, &self.cancel);
            let res = self.view.querier.runtime.block_on(async {
                tokio::select! {
                    r = merge.next_groups(BATCH_SERIES) => r.map_err(merge_error),
                    why = super::interrupted(cancel) => Err(Error::Interrupted(why)),
                }
            });
            self.view.take_notes(&mut self.merge);
            let (groups, ended) = res.inspect_err(|_| self.done = true)?;
            self.done = ended;
            for (labels, members) in groups {
                let s = self
                    .view
                    .stream_series(
                        labels,
                        members,
                        self.mint,
                        self.maxt,
                        self.read,
                        &mut self.held,
                    )
                    .inspect_err(|_| self.done = true)?;
                batch.extend(s);
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

impl ReadView for QuerierView {
    fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::chunk::encode_xor;

    fn chunk(ts: &[i64]) -> AggrChunk {
        let val: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        AggrChunk {
            min_time: ts[0],
            max_time: *ts.last().unwrap(),
            raw: Some(thanos::Chunk {
                r#type: thanos::chunk::Encoding::Xor as i32,
                data: encode_xor(ts, &val).into(),
                hash: 0,
            }),
            ..AggrChunk::default()
        }
    }

    #[test]
    fn overlapping_chunks_become_separate_lanes_and_duplicates_count_once() {
        let chunks = vec![
            chunk(&[100, 200]),
            chunk(&[0, 50]),
            chunk(&[0, 50]),
            chunk(&[40, 60, 300]),
        ];
        let lanes = decode_lanes(chunks, 0, 250, AggrRead::Average).unwrap();
        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes[0].floats.ts, vec![0, 50, 100, 200]);
        assert_eq!(lanes[1].floats.ts, vec![40, 60]);
    }

    /// A wire chunk of float histograms at `ts`, each with count `t`.
    fn hist_chunk(ts: &[i64]) -> AggrChunk {
        use gauntlet_engine::chunk::{FloatHistogramAppender, HistogramAppend};
        use gauntlet_engine::histogram::{FloatHistogram, Span};
        let mut app = FloatHistogramAppender::new();
        for &t in ts {
            let h = FloatHistogram {
                count: t as f64,
                sum: 1.0,
                positive_spans: vec![Span::new(0, 1)],
                positive_buckets: vec![t as f64],
                ..FloatHistogram::default()
            };
            assert!(matches!(
                app.append(None, t, &h).unwrap(),
                HistogramAppend::Appended | HistogramAppend::Recoded
            ));
        }
        AggrChunk {
            min_time: ts[0],
            max_time: *ts.last().unwrap(),
            raw: Some(thanos::Chunk {
                r#type: thanos::chunk::Encoding::FloatHistogram as i32,
                data: app.into_bytes().into(),
                hash: 0,
            }),
            ..AggrChunk::default()
        }
    }

    #[test]
    fn histogram_chunks_decode_into_their_lane() {
        let lanes = decode_lanes(
            vec![hist_chunk(&[0, 10]), chunk(&[20]), hist_chunk(&[5, 15])],
            0,
            100,
            AggrRead::Average,
        )
        .unwrap();
        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes[0].histograms.ts, vec![0, 10]);
        assert_eq!(lanes[0].floats.ts, vec![20]);
        assert_eq!(lanes[1].histograms.ts, vec![5, 15]);
        assert_eq!(lanes[1].histograms.h[1].count, 15.0);
        let mut odd = hist_chunk(&[0]);
        if let Some(raw) = odd.raw.as_mut() {
            raw.r#type = 7;
        }
        assert!(decode_lanes(vec![odd], 0, 100, AggrRead::Average).is_err());
        let corrupt = AggrChunk {
            raw: Some(thanos::Chunk {
                data: vec![0xff, 0xff, 1].into(),
                ..thanos::Chunk::default()
            }),
            ..AggrChunk::default()
        };
        assert!(decode_lanes(vec![corrupt], 0, 100, AggrRead::Average).is_err());
    }

    /// A wire chunk holding the given aggregates of 5m windows.
    fn aggr_chunk(windows: &[(i64, f64, f64, f64)]) -> AggrChunk {
        let ts: Vec<i64> = windows.iter().map(|w| w.0).collect();
        let sub = |v: Vec<f64>| {
            Some(thanos::Chunk {
                r#type: thanos::chunk::Encoding::Xor as i32,
                data: encode_xor(&ts, &v).into(),
                hash: 0,
            })
        };
        AggrChunk {
            min_time: ts[0],
            max_time: *ts.last().unwrap(),
            count: sub(windows.iter().map(|w| w.1).collect()),
            sum: sub(windows.iter().map(|w| w.2).collect()),
            max: sub(windows.iter().map(|w| w.3).collect()),
            ..AggrChunk::default()
        }
    }

    #[test]
    fn downsampled_chunks_decode_by_the_requested_read_with_raw_fallback() {
        let a = aggr_chunk(&[(299_999, 10.0, 50.0, 9.0), (599_999, 20.0, 60.0, 4.0)]);
        let raw = chunk(&[600_000, 615_000]);
        let lanes = decode_lanes(
            vec![raw.clone(), a.clone()],
            0,
            10_000_000,
            AggrRead::Average,
        )
        .unwrap();
        assert_eq!(lanes.len(), 1);
        assert_eq!(lanes[0].floats.ts, vec![299_999, 599_999, 600_000, 615_000]);
        assert_eq!(lanes[0].floats.val, vec![5.0, 3.0, 600_000.0, 615_000.0]);
        let lanes = decode_lanes(vec![a.clone()], 0, 400_000, AggrRead::Max).unwrap();
        assert_eq!(
            (lanes[0].floats.ts.clone(), lanes[0].floats.val.clone()),
            (vec![299_999], vec![9.0])
        );
        // The counter aggregate was not sent: an error naming the chunk, not a guess.
        let e = decode_lanes(vec![a], 0, 400_000, AggrRead::Counter).unwrap_err();
        assert!(e.to_string().contains("[299999, 599999]"), "{e}");
    }

    #[test]
    fn only_raw_chunks_in_one_run_pass_on_undecoded() {
        let members = |sets: Vec<Vec<AggrChunk>>| -> Vec<(usize, Vec<AggrChunk>)> {
            sets.into_iter().enumerate().collect()
        };
        // Two stores serving the same block, and a later chunk: one run, the copy once.
        let run = one_raw_run(&members(vec![
            vec![chunk(&[0, 50]), chunk(&[100, 200])],
            vec![chunk(&[0, 50])],
        ]))
        .expect("one run");
        let times: Vec<(i64, i64)> = run.iter().map(|c| (c.min_time, c.max_time)).collect();
        assert_eq!(times, [(0, 50), (100, 200)]);
        assert!(run.iter().all(|c| c.encoding == Encoding::Xor as u8));
        let hist = one_raw_run(&members(vec![vec![hist_chunk(&[0, 10])]])).expect("one run");
        assert_eq!(hist[0].encoding, Encoding::FloatHistogram as u8);
        // Overlapping chunks are lanes to merge or replicas to deduplicate: decoded here.
        assert!(
            one_raw_run(&members(vec![
                vec![chunk(&[0, 50])],
                vec![chunk(&[40, 60])]
            ]))
            .is_none()
        );
        // Aggregates are read as the function asks: decoded here.
        let a = aggr_chunk(&[(299_999, 10.0, 50.0, 9.0)]);
        assert!(one_raw_run(&members(vec![vec![a]])).is_none());
    }

    #[test]
    fn matchers_travel_in_storeapi_form() {
        let m = [
            Matcher::equal("a", "b"),
            Matcher::new(MatchType::NotRegexp, "c", "d.*").unwrap(),
        ];
        let p = to_proto_matchers(&m);
        assert_eq!(p[0].r#type, label_matcher::Type::Eq as i32);
        assert_eq!(p[1].r#type, label_matcher::Type::Nre as i32);
        assert_eq!((p[1].name.as_str(), p[1].value.as_str()), ("c", "d.*"));
    }
}
