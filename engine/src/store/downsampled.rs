//! PromQL over the bucket store at a chosen resolution (`max_source_resolution`): the Series
//! call picks downsampled blocks where allowed, asking for the aggregates the function around
//! the selector needs; the streamed answer goes to PromQL batch by batch, raw chunks as they are
//! (decoded on PromQL's workers) and downsampled ones decoded as Thanos's querier decodes them.

use super::block::RawChunk;
use super::series::{SeriesQuery, StoreSeries};
use super::{BucketStore, SeriesStream};
use crate::chunk::{AggrChunk, AggrType, Encoding, SampleBatch};
use crate::downsample::{AggrRead, ServedChunk, decode_chunks, resolution_for};
use crate::error::{Error, Result};
use crate::labels::Matcher;
use crate::query::{
    self, Grouping, SelectHints, Series, SeriesChunk, SeriesData, StreamSeries, collect_stream,
};

impl BucketStore {
    /// Series matching `matchers` with samples in `[mint, maxt]` (ms), read from blocks of at
    /// most `max_resolution` ms resolution (0 = raw only). Raw chunks give their samples;
    /// downsampled ones the aggregate `hints.func` calls for (an average of sum and count for
    /// plain selectors), so results approximate the raw answer.
    pub fn select_at_resolution(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
        max_resolution: i64,
    ) -> Result<Vec<Series>> {
        if hints.func.as_deref() == Some("series") {
            return self.series_labels(matchers, mint, maxt, hints, max_resolution);
        }
        let stream =
            self.select_stream_at_resolution(matchers, mint, maxt, hints, max_resolution)?;
        collect_stream(stream, mint, maxt)
    }

    /// The series API's selection (`hints.func` "series"): every matching series with a chunk
    /// overlapping `[mint, maxt]`, labels only, as Prometheus answers it (a series whose chunk
    /// spans the range counts even without a sample inside it); no chunk is read.
    fn series_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
        max_resolution: i64,
    ) -> Result<Vec<Series>> {
        let q = SeriesQuery {
            skip_chunks: true,
            ..query_at_resolution(matchers, mint, maxt, None, hints, max_resolution)
        };
        let mut stream = self.block_on(self.series_stream(&q))?;
        let mut out = Vec::new();
        while let Some(batch) = self.block_on(stream.next_batch())? {
            out.extend(
                batch
                    .all_series()
                    .into_iter()
                    .map(|s| Series::floats(s.labels, SampleBatch::new())),
            );
        }
        Ok(out)
    }

    /// The selection of [`BucketStore::select_at_resolution`] as a stream of bounded batches
    /// in label order: series whose chunks are all raw are handed over as chunks, for the
    /// consumer to decode; those with downsampled chunks are decoded here to the aggregate
    /// `hints.func` calls for.
    pub fn select_stream_at_resolution<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
        max_resolution: i64,
    ) -> Result<Box<dyn query::SeriesStream + 'a>> {
        let func = hints.func.as_deref();
        let read = AggrRead::for_func(func);
        let q = SeriesQuery {
            aggregates: read.aggregates().to_vec(),
            ..query_at_resolution(matchers, mint, maxt, func, hints, max_resolution)
        };
        let inner = self.block_on(self.series_stream(&q))?;
        Ok(Box::new(ResolutionStream {
            store: self,
            inner,
            grouping: hints.grouping.clone(),
            read,
            mint,
            maxt,
        }))
    }
}

/// The Series request PromQL makes over `[mint, maxt]`: failing on any block's error, from
/// blocks of the resolution allowed for `func` over the selector's range.
fn query_at_resolution(
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    func: Option<&str>,
    hints: &SelectHints,
    max_resolution: i64,
) -> SeriesQuery {
    SeriesQuery {
        min_time: mint,
        max_time: maxt,
        matchers: matchers.to_vec(),
        abort_on_error: true,
        max_resolution_window: resolution_for(max_resolution, func, hints.range_ms),
        ..SeriesQuery::default()
    }
}

/// The store's Series stream as PromQL reads it.
struct ResolutionStream<'a> {
    store: &'a BucketStore,
    inner: SeriesStream,
    /// The labels the caller reads; series come merged across blocks, so the rest can go.
    grouping: Option<Grouping>,
    read: AggrRead,
    mint: i64,
    maxt: i64,
}

impl query::SeriesStream for ResolutionStream<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        let Some(batch) = self.store.block_on(self.inner.next_batch())? else {
            return Ok(None);
        };
        let xor = Encoding::Xor as u8;
        let mut out = Vec::with_capacity(batch.len());
        for StoreSeries { labels, chunks } in batch.all_series_reading(self.grouping.as_ref()) {
            // Raw chunks, float or native histogram, go to the consumer as they are.
            let data = if chunks
                .iter()
                .all(|c| c.encoding == xor || query::is_histogram_encoding(c.encoding))
            {
                SeriesData::Chunks(chunks.into_iter().map(SeriesChunk::from).collect())
            } else {
                let mut samples = SampleBatch::new();
                decode_series(&chunks, self.read, &mut samples)
                    .map_err(|e| Error::InvalidInput(format!("series {labels:?}: {e}")))?;
                samples.truncate_to_range(self.mint, self.maxt);
                SeriesData::Decoded(samples)
            };
            out.push(StreamSeries { labels, data });
        }
        Ok(Some(out))
    }
}

/// Decodes a served series with downsampled chunks through [`decode_chunks`] (raw chunks of
/// the same series, filling gaps, included).
fn decode_series(chunks: &[RawChunk], read: AggrRead, out: &mut SampleBatch) -> Result<(), String> {
    let xor = Encoding::Xor as u8;
    let mut served = Vec::with_capacity(chunks.len());
    for c in chunks {
        let mut s = ServedChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            ..ServedChunk::default()
        };
        if c.encoding == xor {
            s.raw = Some(&c.data);
        } else if c.encoding == Encoding::Aggr as u8 {
            let ac = AggrChunk::new(&c.data);
            s.aggr = AggrType::ALL.map(|t| ac.get_xor(t).ok());
        } else {
            return Err(format!(
                "chunk encoding {} is not decoded by PromQL",
                c.encoding
            ));
        }
        served.push(s);
    }
    decode_chunks(&served, read, out).map_err(|e| e.to_string())
}
