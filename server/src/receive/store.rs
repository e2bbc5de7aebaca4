//! The receiver's StoreAPI and Info service: every tenant's head and local blocks, each
//! tenant one label set (the `--label`s plus the tenant label), as Thanos Receive serves them,
//! so a querier sees samples seconds after they were written. The head's native histogram
//! chunks go out as they are, integer ones as `HISTOGRAM` and float ones as `FLOAT_HISTOGRAM`.
//! With `--query.enforce-tenancy` each call reads only the tenant its metadata names
//! ([`crate::query::tenancy`]).

use std::sync::Arc;

use gauntlet_engine::block::cut::DEFAULT_CHUNK_RANGE_MS;
use gauntlet_engine::block::histogram_cut::cut_float_histogram_chunks;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::chunk::{HistogramBatch, SampleBatch};
use gauntlet_engine::head::{HeadRead, HeadStream};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::{Labels, Matcher, external_matchers};
use gauntlet_engine::query::{
    Queryable, SelectHints, Selection, Series, SeriesData, SeriesStream, StreamSeries, VecStream,
    collect_labels, collect_stream, external_names_clash, merge_streams, with_external_labels,
    without_labels,
};
use gauntlet_engine::store::{ChunkView, RawChunk, encode_batch, merge_chunks};
use gauntlet_proto::thanos;
use prost::Message as _;
use tonic::{Request, Response, Status};

use super::tenants::{Tenant, Tenants};
use crate::grpc::convert;
use crate::memory::SendError;
use crate::query::tenancy::{Tenancy, scope_call};

/// Frames of a Series answer made and waiting to be sent, at most.
const SERIES_FRAMES_QUEUED: usize = 4;

/// The StoreAPI over the tenants.
#[derive(Debug, Clone)]
pub struct ReceiveStore {
    tenants: Arc<Tenants>,
    /// The tenancy every Series, LabelNames and LabelValues call is held to.
    tenancy: Option<Tenancy>,
    /// Whether Info advertises the Exemplars service (exemplar storage is on).
    exemplars: bool,
}

impl ReceiveStore {
    /// Serves `tenants`, every call held to its tenant when `tenancy` is given.
    pub fn new(tenants: Arc<Tenants>, tenancy: Option<Tenancy>) -> Self {
        ReceiveStore {
            tenants,
            tenancy,
            exemplars: false,
        }
    }

    /// Has Info advertise the Exemplars service, which the caller serves beside.
    pub fn with_exemplars(mut self, on: bool) -> Self {
        self.exemplars = on;
        self
    }

    /// What Info says of the exemplars, when they are served: from the oldest exemplar held
    /// (the earliest time when none is), unbounded after.
    pub fn exemplars_info(&self) -> Option<thanos::info::ExemplarsInfo> {
        self.exemplars.then(|| {
            let oldest = self
                .tenants
                .all()
                .iter()
                .map(|t| t.head.exemplar_stats().min_ts)
                .min()
                .filter(|&t| t != i64::MAX)
                .unwrap_or(i64::MIN);
            thanos::info::ExemplarsInfo {
                min_time: oldest,
                max_time: i64::MAX,
            }
        })
    }

    /// Label sets and time ranges: one per tenant. The newest time is unbounded, as Thanos
    /// Receive says, since samples keep arriving.
    fn label_sets(&self) -> Vec<(Labels, i64)> {
        self.tenants
            .all()
            .iter()
            .map(|t| (t.external.clone(), t.min_time()))
            .collect()
    }
}

/// Series of every tenant matching `matchers` with samples in `[mint, maxt]`, each with its
/// tenant's external labels, sorted by labels. Blocking.
pub fn select(
    tenants: &Tenants,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    hints: &SelectHints,
) -> gauntlet_engine::Result<Vec<Series>> {
    let mut out = Vec::new();
    for (t, ms) in targets(tenants, matchers) {
        for mut s in t.source().select(&ms, mint, maxt, hints)? {
            s.labels = s.labels.with_external(&t.external);
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Every tenant's series matching `matchers` with data in `[mint, maxt]`, read as `read`
/// asks, each with its tenant's external labels, in label order, a batch at a time: each
/// tenant's local blocks and head merged, the tenants merged. Blocking. Once `cancel` ends,
/// the heads read no more (reads already queued on their cores are skipped). What the heads'
/// streams hold is reserved from `reads`.
/// A head stream already opened by [`Prefetched::open`] for the same selection is taken
/// instead of opening one.
#[allow(clippy::too_many_arguments)]
pub fn stream(
    tenants: &Tenants,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    read: HeadRead,
    cancel: &gauntlet_engine::query::Cancel,
    reads: &Arc<MemoryBudget>,
    prefetched: &Prefetched,
) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'static>> {
    let mut parts = Vec::new();
    for (t, ms) in targets(tenants, matchers) {
        let sel = Selection {
            matchers: ms,
            mint,
            maxt,
        };
        let head = match prefetched.take(&t.name, &sel, read) {
            Some(h) => h,
            None => t.head.stream_in(&sel.matchers, mint, maxt, read, reads)?,
        };
        parts.push(tenant_stream(
            &t,
            &sel,
            head.cancel_with(cancel.clone()),
            read,
        )?);
    }
    Ok(merge_streams(parts, mint, maxt))
}

/// Head streams opened ahead of their selections, per tenant, in the order they were
/// announced ([`Queryable::prefetch`]): a ruler's group opens its rules' selections of each
/// head in one visit to its cores, then its rules take them one by one.
#[derive(Default)]
pub struct Prefetched {
    open: std::sync::Mutex<std::collections::VecDeque<(String, Selection, HeadStream)>>,
}

impl std::fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.open.lock().map_or(0, |o| o.len());
        f.debug_struct("Prefetched").field("open", &n).finish()
    }
}

impl Prefetched {
    /// Opens every tenant's part of `selections`, read as `read` asks, each head's in one
    /// visit to its cores, replacing what was opened before and not taken. A head that fails
    /// to open them leaves its selections to be opened when asked for.
    pub fn open(
        &self,
        tenants: &Tenants,
        selections: &[Selection],
        read: HeadRead,
        reads: &Arc<MemoryBudget>,
    ) {
        let mut by_tenant: Vec<(Arc<Tenant>, Vec<Selection>)> = Vec::new();
        for sel in selections {
            for (t, ms) in targets(tenants, &sel.matchers) {
                let part = Selection {
                    matchers: ms,
                    mint: sel.mint,
                    maxt: sel.maxt,
                };
                match by_tenant.iter_mut().find(|(o, _)| Arc::ptr_eq(o, &t)) {
                    Some((_, list)) => list.push(part),
                    None => by_tenant.push((t, vec![part])),
                }
            }
        }
        let mut open = std::collections::VecDeque::new();
        for (t, sels) in by_tenant {
            match t.head.stream_many_in(sels.clone(), read, reads) {
                Ok(streams) => open.extend(
                    sels.into_iter()
                        .zip(streams)
                        .map(|(sel, h)| (t.name.clone(), sel, h)),
                ),
                Err(e) => {
                    tracing::debug!(tenant = %t.name, error = %e, "selections not read ahead")
                }
            }
        }
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = open;
    }

    /// The stream opened for tenant `tenant`'s selection `sel` read as `read` asks, if one
    /// was and is not taken.
    fn take(&self, tenant: &str, sel: &Selection, read: HeadRead) -> Option<HeadStream> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // Selections are asked for in the order they were announced: the match is near the
        // front.
        let i = open
            .iter()
            .position(|(t, s, h)| t == tenant && s == sel && h.read() == read)?;
        open.remove(i).map(|(_, _, h)| h)
    }
}

/// One tenant's part of [`stream`].
fn tenant_stream(
    t: &Tenant,
    sel: &Selection,
    head: HeadStream,
    head_read: HeadRead,
) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'static>> {
    let (mint, maxt) = (sel.mint, sel.maxt);
    let blocks = t.local_blocks();
    let own = merge_streams(
        vec![blocks.stream(&sel.matchers, mint, maxt)?, Box::new(head)],
        mint,
        maxt,
    );
    let clash = external_names_clash(&t.external, |name| {
        blocks.has_label_name(name) || t.head.has_label_name(name).unwrap_or(true)
    });
    if !clash {
        return Ok(with_external_labels(own, t.external.clone()));
    }
    // Series that carry an external label's name have it replaced, which can reorder them
    // anywhere: the selection is sorted whole, as the external labels leave it.
    let mut all = if head_read == HeadRead::Labels {
        collect_labels(own)?
    } else {
        collect_stream(own, mint, maxt)?
    };
    for s in &mut all {
        s.labels = s.labels.with_external(&t.external);
    }
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Box::new(VecStream::new(all)))
}

/// Decoded samples as chunks, in time order: floats in XOR chunks of at most 120 samples, as
/// the bucket store serves them; native histograms in float histogram chunks cut by the
/// head's rule.
fn decoded_chunks(samples: &SampleBatch, histograms: &HistogramBatch) -> Vec<RawChunk> {
    let mut out = encode_batch(samples);
    if !histograms.is_empty() {
        let hs: Vec<(i64, FloatHistogram)> = histograms
            .ts
            .iter()
            .copied()
            .zip(histograms.h.iter().cloned())
            .collect();
        // The head validated every histogram it holds, so cutting cannot fail; a failure
        // would leave the series without its histograms rather than fail the request.
        match cut_float_histogram_chunks(&hs, DEFAULT_CHUNK_RANGE_MS) {
            Ok(chunks) => out.extend(chunks.into_iter().map(|c| RawChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: c.encoding as u8,
                data: c.data.into(),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "encoding head histograms for the StoreAPI failed")
            }
        }
    }
    out.sort_by_key(|c| c.min_time);
    out
}

/// A streamed series' chunks as the StoreAPI sends them: stored chunks sorted by time, cut
/// to at most 120 samples and those that overlap merged ([`merge_chunks`]), or decoded
/// samples encoded ([`decoded_chunks`]).
pub(crate) fn series_chunks(labels: &Labels, data: SeriesData) -> Result<Vec<RawChunk>, Status> {
    match data {
        SeriesData::Chunks(cs) => merge_chunks(cs.into_iter().map(RawChunk::from).collect())
            .map_err(|e| Status::internal(format!("series {labels}: {e}"))),
        SeriesData::Decoded(b) => Ok(decoded_chunks(&b, &HistogramBatch::new())),
        SeriesData::DecodedWithHistograms(b, h) => Ok(decoded_chunks(&b, &h)),
    }
}

/// Sends `batch` as Series frames ([`wire_series`], [`convert::series_responses`]), each held
/// in the memory budget until sent: `Ok(false)` when the client went away, a refusal when
/// the budget has no room.
pub(crate) fn send_series(
    tx: &crate::memory::FrameSender<Result<thanos::SeriesResponse, Status>>,
    batch: Vec<StreamSeries>,
    strip: &[String],
    skip_chunks: bool,
    batch_size: i64,
) -> Result<bool, Status> {
    let wire = batch
        .into_iter()
        .map(|s| wire_series(s, strip, skip_chunks))
        .collect::<Result<Vec<_>, Status>>()?;
    for frame in convert::series_responses(wire, batch_size) {
        let bytes = frame.encoded_len() as u64;
        match tx.blocking_send(Ok(frame), bytes) {
            Ok(()) => {}
            Err(SendError::Closed) => return Ok(false),
            Err(SendError::OverBudget(why)) => return Err(crate::memory::refusal(&why)),
        }
    }
    Ok(true)
}

/// A streamed series as the StoreAPI sends it: labels without `strip`, its chunks as
/// [`series_chunks`] makes them; none when the request skips chunks.
pub(crate) fn wire_series(
    s: StreamSeries,
    strip: &[String],
    skip_chunks: bool,
) -> Result<thanos::Series, Status> {
    let labels = convert::labels(&without_labels(&s.labels, strip));
    if skip_chunks {
        return Ok(thanos::Series {
            labels,
            chunks: Vec::new(),
        });
    }
    let chunks = series_chunks(&s.labels, s.data)?
        .iter()
        .map(|c| {
            convert::chunk(&ChunkView {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: c.encoding,
                data: &c.data,
            })
        })
        .collect();
    Ok(thanos::Series { labels, chunks })
}

/// Label names of every tenant's series matching `matchers` in `[mint, maxt]`, external
/// labels included. Blocking.
pub fn label_names(
    tenants: &Tenants,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> gauntlet_engine::Result<Vec<String>> {
    let mut names = Vec::new();
    for (t, ms) in targets(tenants, matchers) {
        let own = t.source().label_names(&ms, mint, maxt)?;
        if !own.is_empty() {
            names.extend(own);
            names.extend(t.external.iter().map(|l| l.name.to_string()));
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Values of label `name` over every tenant's series matching `matchers` in `[mint, maxt]`.
/// Blocking.
pub fn label_values(
    tenants: &Tenants,
    name: &str,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> gauntlet_engine::Result<Vec<String>> {
    let mut values = Vec::new();
    for (t, ms) in targets(tenants, matchers) {
        match t.external.get(name) {
            // An external label has one value for every series of the tenant.
            Some(v) => {
                if !t.source().label_names(&ms, mint, maxt)?.is_empty() {
                    values.push(v.to_string());
                }
            }
            None => values.extend(t.source().label_values(name, &ms, mint, maxt)?),
        }
    }
    values.sort();
    values.dedup();
    Ok(values)
}

/// The tenants a request may touch with the matchers left for each.
fn targets(tenants: &Tenants, matchers: &[Matcher]) -> Vec<(Arc<Tenant>, Vec<Matcher>)> {
    tenants
        .all()
        .into_iter()
        .filter_map(|t| external_matchers(&t.external, matchers).map(|m| (t, m)))
        .collect()
}

type WireStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<thanos::SeriesResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl thanos::store_server::Store for ReceiveStore {
    async fn info(
        &self,
        _req: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        let sets = self.label_sets();
        Ok(Response::new(thanos::InfoResponse {
            labels: Vec::new(),
            min_time: sets.iter().map(|s| s.1).min().unwrap_or(i64::MAX),
            max_time: i64::MAX,
            store_type: thanos::StoreType::Receive as i32,
            label_sets: sets
                .iter()
                .map(|s| thanos::LabelSet {
                    labels: convert::labels(&s.0),
                })
                .collect(),
        }))
    }

    type SeriesStream = WireStream;

    async fn series(
        &self,
        req: Request<thanos::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let (metadata, _, mut req) = req.into_parts();
        if req.matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        scope_call(self.tenancy.as_ref(), metadata.as_ref(), &mut req.matchers)?;
        let matchers = convert::matchers(req.matchers.clone(), self.tenants.budget()).await?;
        let tenants = self.tenants.clone();
        let (mint, maxt) = (req.min_time, req.max_time);
        let strip = req.without_replica_labels.clone();
        let skip_chunks = req.skip_chunks;
        let batch_size = req.response_batch_size;
        let shard = convert::shard_info(req.shard_info.take());
        // The series are read a batch at a time on a blocking thread and sent as they are
        // encoded; each frame waiting to be sent holds its bytes in the memory budget.
        let (tx, frames) =
            crate::memory::frame_channel(self.tenants.budget(), "Series", SERIES_FRAMES_QUEUED);
        // tonic drops the response stream when the client cancels or its deadline passes;
        // the guard riding on it then ends the producer before its next batch.
        let cancel = gauntlet_engine::query::Cancel::new(None);
        let frames = crate::grpc::cancel::CancelOnClose::new(frames, cancel.on_drop());
        tokio::task::spawn_blocking(move || {
            let read = if skip_chunks {
                HeadRead::Labels
            } else {
                HeadRead::Stored
            };
            let sent = (|| -> Result<(), Status> {
                let reads = tenants.budget();
                let mut series = stream(
                    &tenants,
                    &matchers,
                    mint,
                    maxt,
                    read,
                    &cancel,
                    reads,
                    &Prefetched::default(),
                )
                .map_err(convert::engine_status)?;
                loop {
                    if cancel.check().is_err() {
                        return Ok(());
                    }
                    let Some(mut batch) = series.next_batch().map_err(convert::engine_status)?
                    else {
                        break;
                    };
                    // A sharded request gets the series of its shard, hashed as they are sent:
                    // with the external labels, without the replica labels taken off.
                    if let Some(shard) = &shard {
                        batch.retain(|s| shard.matches_except(&s.labels, &strip));
                    }
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
        let (metadata, _, mut r) = req.into_parts();
        scope_call(self.tenancy.as_ref(), metadata.as_ref(), &mut r.matchers)?;
        let matchers = convert::matchers(r.matchers.clone(), self.tenants.budget()).await?;
        let tenants = self.tenants.clone();
        let mut names =
            tokio::task::spawn_blocking(move || label_names(&tenants, &matchers, r.start, r.end))
                .await
                .map_err(|e| Status::internal(format!("label names: {e}")))?
                .map_err(convert::engine_status)?;
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
        let (metadata, _, mut r) = req.into_parts();
        scope_call(self.tenancy.as_ref(), metadata.as_ref(), &mut r.matchers)?;
        let matchers = convert::matchers(r.matchers.clone(), self.tenants.budget()).await?;
        let tenants = self.tenants.clone();
        let name = r.label.clone();
        let mut values = tokio::task::spawn_blocking(move || {
            label_values(&tenants, &name, &matchers, r.start, r.end)
        })
        .await
        .map_err(|e| Status::internal(format!("label values: {e}")))?
        .map_err(convert::engine_status)?;
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
impl thanos::info::info_server::Info for ReceiveStore {
    async fn info(
        &self,
        _req: Request<thanos::info::InfoRequest>,
    ) -> Result<Response<thanos::info::InfoResponse>, Status> {
        let sets: Vec<convert::InfoSet> = self
            .label_sets()
            .into_iter()
            .map(|(labels, min_time)| convert::InfoSet {
                labels,
                min_time,
                max_time: i64::MAX,
            })
            .collect();
        let mut info = convert::info_response("receive", &sets, true);
        info.exemplars = self.exemplars_info();
        Ok(Response::new(info))
    }
}

#[cfg(test)]
mod tests {
    use gauntlet_engine::chunk::SampleBatch;
    use gauntlet_engine::labels::Labels;
    use gauntlet_engine::query::{SeriesChunk, SeriesData, StreamSeries};
    use gauntlet_engine::store::{WireBatch, WireFraming, encode_batch, put_frame};
    use gauntlet_proto::thanos;
    use prost::Message as _;

    use super::{series_chunks, wire_series};

    fn samples(from: i64, n: i64) -> SampleBatch {
        let mut b = SampleBatch::new();
        for i in 0..n {
            b.push(from + i * 15_000, i as f64 * 0.5);
        }
        b
    }

    fn stored(b: &SampleBatch) -> SeriesData {
        SeriesData::Chunks(encode_batch(b).into_iter().map(SeriesChunk::from).collect())
    }

    #[test]
    fn series_written_into_frames_are_the_messages_byte_for_byte() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("replica", "0")]);
        // Stored chunks (one cut past 120 samples), two overlapping parts merged, and
        // decoded samples.
        let mut overlapping = match stored(&samples(0, 50)) {
            SeriesData::Chunks(c) => c,
            _ => unreachable!(),
        };
        if let SeriesData::Chunks(more) = stored(&samples(300_000, 80)) {
            overlapping.extend(more);
        }
        let datas = [
            stored(&samples(0, 300)),
            SeriesData::Chunks(overlapping),
            SeriesData::Decoded(samples(1_000, 130)),
        ];
        for strip in [vec![], vec!["replica".to_string()]] {
            for skip_chunks in [false, true] {
                for data in &datas {
                    let s = StreamSeries {
                        labels: labels.clone(),
                        data: data.clone(),
                    };
                    let message = wire_series(s.clone(), &strip, skip_chunks).unwrap();
                    let mut want = Vec::new();
                    put_frame(
                        &thanos::SeriesResponse {
                            result: Some(thanos::series_response::Result::Series(message)),
                        }
                        .encode_to_vec(),
                        &mut want,
                    );
                    // As a sidecar writes the head's series into its answer's frames.
                    let fields: Vec<(&[u8], &[u8])> = s
                        .labels
                        .iter()
                        .filter(|l| !strip.iter().any(|n| *n == l.name))
                        .map(|l| (l.name.as_bytes(), l.value.as_bytes()))
                        .collect();
                    let chunks = if skip_chunks {
                        Vec::new()
                    } else {
                        series_chunks(&s.labels, s.data.clone()).unwrap()
                    };
                    let mut got = WireBatch::new(WireFraming::for_request(0));
                    got.push_series(&fields, &chunks);
                    assert_eq!(
                        got.into_frames().as_ref(),
                        want.as_slice(),
                        "strip {strip:?}, skip_chunks {skip_chunks}, {data:?}"
                    );
                }
            }
        }
    }
}
