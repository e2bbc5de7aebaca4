//! PromQL over the bucket store at a chosen resolution (`max_source_resolution`): the Series
//! call picks downsampled blocks where allowed, asking for the aggregates the function around
//! the selector needs, and the chunks of the streamed answer are decoded batch by batch as
//! Thanos's querier decodes them.

use super::BucketStore;
use super::batch::ChunkView;
use super::series::SeriesQuery;
use crate::chunk::{AggrChunk, AggrType, Encoding, SampleBatch, decode_xor_into};
use crate::downsample::{AggrRead, ServedChunk, decode_chunks, resolution_for};
use crate::error::{Error, Result};
use crate::labels::Matcher;
use crate::query::{SelectHints, Series};

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
        let func = hints.func.as_deref();
        let read = AggrRead::for_func(func);
        let q = SeriesQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            abort_on_error: true,
            max_resolution_window: resolution_for(max_resolution, func, hints.range_ms),
            aggregates: read.aggregates().to_vec(),
            ..SeriesQuery::default()
        };
        let mut out = Vec::new();
        self.block_on(async {
            let mut stream = self.series_stream(&q).await?;
            while let Some(batch) = stream.next_batch().await? {
                for i in 0..batch.len() {
                    let mut samples = SampleBatch::new();
                    decode_series(&batch.chunks(i).collect::<Vec<_>>(), read, &mut samples)
                        .map_err(|e| {
                            Error::InvalidInput(format!("series {:?}: {e}", batch.series(i).labels))
                        })?;
                    samples.truncate_to_range(mint, maxt);
                    if !samples.is_empty() {
                        out.push(Series {
                            labels: batch.series(i).labels,
                            samples,
                        });
                    }
                }
            }
            Ok::<(), Error>(())
        })?;
        Ok(out)
    }
}

/// Decodes a served series: raw XOR chunks straight into the batch, anything downsampled
/// through [`decode_chunks`].
fn decode_series(
    chunks: &[ChunkView<'_>],
    read: AggrRead,
    out: &mut SampleBatch,
) -> Result<(), String> {
    let xor = Encoding::Xor as u8;
    if chunks.iter().all(|c| c.encoding == xor) {
        for c in chunks {
            decode_xor_into(c.data, out).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let mut served = Vec::with_capacity(chunks.len());
    for c in chunks {
        let mut s = ServedChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            ..ServedChunk::default()
        };
        if c.encoding == xor {
            s.raw = Some(c.data);
        } else if c.encoding == Encoding::Aggr as u8 {
            let ac = AggrChunk::new(c.data);
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
