//! The native histogram part of a head series: its histogram chunks (integer or float, cut by
//! the head's rule, [`HistogramChunkCutter`]), its newest histogram, which decides whether a
//! sample at the same timestamp is a duplicate or a conflict, and the histograms that came out
//! of order within the out-of-order window, kept apart as Prometheus's out-of-order head keeps
//! them (and logged to the WBL). Only series that received a histogram carry one, behind a box.

use crate::block::histogram_cut::{CutHistogramChunk, HistogramChunkCutter};
use crate::chunk::{ChunkError, Encoding, HistogramBatch};
use crate::histogram::{FloatHistogram, Histogram, HistogramError};

/// A histogram sample on its way into the head, integer or float.
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValue {
    /// Bucket counts as deltas.
    Int(Histogram),
    /// Absolute float bucket counts.
    Float(FloatHistogram),
}

impl HistogramValue {
    /// The stale marker of the same kind as `self`.
    pub fn stale_like(&self) -> HistogramValue {
        match self {
            HistogramValue::Int(_) => HistogramValue::Int(Histogram::stale_marker()),
            HistogramValue::Float(_) => HistogramValue::Float(FloatHistogram::stale_marker()),
        }
    }

    /// Whether `other` holds the same histogram: the kind and every field but the counter
    /// reset hint, floats by bit pattern (Prometheus compares histograms without the hint
    /// when it decides a sample at a stored timestamp is a duplicate).
    pub fn same_as(&self, other: &HistogramValue) -> bool {
        match (self, other) {
            (HistogramValue::Int(a), HistogramValue::Int(b)) => {
                let b = Histogram {
                    counter_reset_hint: a.counter_reset_hint,
                    ..b.clone()
                };
                a.identical(&b)
            }
            (HistogramValue::Float(a), HistogramValue::Float(b)) => {
                let b = FloatHistogram {
                    counter_reset_hint: a.counter_reset_hint,
                    ..b.clone()
                };
                a.identical(&b)
            }
            _ => false,
        }
    }

    /// Checks the histogram as Prometheus checks one before storing it.
    pub fn validate(&self) -> Result<(), HistogramError> {
        match self {
            HistogramValue::Int(h) => h.validate(),
            HistogramValue::Float(h) => h.validate(),
        }
    }

    /// The histogram with float counts, as a chunk iterator hands it to PromQL (integer
    /// buckets read as the float nearest each absolute count).
    pub fn to_float(&self) -> FloatHistogram {
        match self {
            HistogramValue::Int(h) => h.to_float_from_counts(),
            HistogramValue::Float(h) => h.clone(),
        }
    }

    /// Bytes the value takes on the heap and inline, roughly.
    fn bytes(&self) -> usize {
        let (spans, buckets, custom) = match self {
            HistogramValue::Int(h) => (
                h.positive_spans.len() + h.negative_spans.len(),
                h.positive_buckets.len() + h.negative_buckets.len(),
                h.custom_values.len(),
            ),
            HistogramValue::Float(h) => (
                h.positive_spans.len() + h.negative_spans.len(),
                h.positive_buckets.len() + h.negative_buckets.len(),
                h.custom_values.len(),
            ),
        };
        std::mem::size_of::<HistogramValue>() + spans * 8 + (buckets + custom) * 8
    }
}

/// A series' histogram chunks and newest histogram.
#[derive(Debug)]
pub(crate) struct HistSeries {
    /// The open chunk (and chunks it finished, taken out at each append).
    cutter: HistogramChunkCutter,
    chunk_range: i64,
    /// Closed chunks, in time order.
    pub chunks: Vec<CutHistogramChunk>,
    /// The newest histogram appended in order and its timestamp, ms.
    pub last: Option<(i64, HistogramValue)>,
    /// Histograms older than the newest in-order sample, within the out-of-order window:
    /// sorted by time, distinct timestamps.
    pub ooo: Vec<(i64, HistogramValue)>,
}

impl HistSeries {
    pub fn new(chunk_range_ms: i64) -> Self {
        HistSeries {
            cutter: HistogramChunkCutter::new(chunk_range_ms),
            chunk_range: chunk_range_ms,
            chunks: Vec::new(),
            last: None,
            ooo: Vec::new(),
        }
    }

    /// Keeps an out-of-order histogram, unless it does not validate or a histogram is held at
    /// `t` already, in order or not (the same one: a duplicate; another: a conflict). The
    /// caller has checked the series' float samples.
    pub fn insert_ooo(&mut self, t: i64, h: HistogramValue) -> Result<(), OooRefusal> {
        h.validate().map_err(|_| OooRefusal::Invalid)?;
        let i = match self.ooo.binary_search_by_key(&t, |x| x.0) {
            Ok(i) => {
                return Err(if self.ooo[i].1.same_as(&h) {
                    OooRefusal::Duplicate
                } else {
                    OooRefusal::Conflict
                });
            }
            Err(i) => i,
        };
        if let Some(held) = self.in_order_at(t) {
            return Err(if held.same_as(&h) {
                OooRefusal::Duplicate
            } else {
                OooRefusal::Conflict
            });
        }
        self.ooo.insert(i, (t, h));
        Ok(())
    }

    /// Whether a histogram is held at exactly `t`, in order or not.
    pub fn holds(&self, t: i64) -> bool {
        self.ooo.binary_search_by_key(&t, |x| x.0).is_ok() || self.in_order_at(t).is_some()
    }

    /// The in-order histogram at exactly `t`, if any (decodes the one chunk that may hold it).
    fn in_order_at(&self, t: i64) -> Option<HistogramValue> {
        let (enc, _, _, data) = self.all_chunks().find(|c| c.1 <= t && t <= c.2)?;
        decode_values(enc, data)
            .into_iter()
            .find(|(ts, _)| *ts == t)
            .map(|x| x.1)
    }

    /// Whether an out-of-order histogram lies in `[mint, maxt]`.
    pub fn has_ooo_in(&self, mint: i64, maxt: i64) -> bool {
        self.ooo.iter().any(|x| x.0 >= mint && x.0 <= maxt)
    }

    /// Every histogram in `[mint, maxt]`, in order and out of order merged, each of the kind
    /// it was stored as.
    pub fn values(&self, mint: i64, maxt: i64) -> Vec<(i64, HistogramValue)> {
        let mut out = Vec::new();
        for (enc, lo, hi, data) in self.all_chunks() {
            if hi < mint || lo > maxt {
                continue;
            }
            out.extend(
                decode_values(enc, data)
                    .into_iter()
                    .filter(|(t, _)| *t >= mint && *t <= maxt),
            );
        }
        let ooo = self.ooo.iter().filter(|x| x.0 >= mint && x.0 <= maxt);
        if ooo.clone().next().is_some() {
            out.extend(ooo.cloned());
            // Timestamps are distinct: in-order and out-of-order ones never coincide.
            out.sort_by_key(|x| x.0);
        }
        out
    }

    /// Appends a histogram after every stored sample of the series; fails when the histogram
    /// does not validate (nothing is stored then).
    pub fn append(&mut self, t: i64, h: HistogramValue) -> Result<(), ChunkError> {
        match &h {
            HistogramValue::Int(x) => self.cutter.append_histogram(t, x)?,
            HistogramValue::Float(x) => self.cutter.append_float_histogram(t, x)?,
        }
        self.chunks.extend(self.cutter.take_finished());
        self.last = Some((t, h));
        Ok(())
    }

    /// Closes the open chunk (a float sample follows).
    pub fn close(&mut self) {
        self.cutter.close();
        self.chunks.extend(self.cutter.take_finished());
    }

    /// Every chunk, closed and open, as (encoding, min, max, payload), in time order.
    pub fn all_chunks(&self) -> impl Iterator<Item = (Encoding, i64, i64, &[u8])> + '_ {
        self.chunks
            .iter()
            .map(|c| (c.encoding, c.min_time, c.max_time, c.data.as_slice()))
            .chain(self.cutter.open())
    }

    /// The chunks holding the histograms in `[mint, maxt]`, each in the encoding its
    /// histograms were stored in: the head's own chunks (whole, as a query of the head gets
    /// them) unless out-of-order histograms fall in the range; then the histograms of the
    /// range, merged, cut afresh by the head's rule.
    pub fn chunks_in(&self, mint: i64, maxt: i64) -> Vec<CutHistogramChunk> {
        if !self.has_ooo_in(mint, maxt) {
            return self
                .all_chunks()
                .filter(|c| c.2 >= mint && c.1 <= maxt)
                .map(|(encoding, min_time, max_time, data)| CutHistogramChunk {
                    encoding,
                    min_time,
                    max_time,
                    data: data.to_vec(),
                })
                .collect();
        }
        let mut cutter = HistogramChunkCutter::new(self.chunk_range);
        for (t, h) in self.values(mint, maxt) {
            // The head validated every histogram it holds.
            let _ = match &h {
                HistogramValue::Int(x) => cutter.append_histogram(t, x),
                HistogramValue::Float(x) => cutter.append_float_histogram(t, x),
            };
        }
        cutter.finish()
    }

    /// Oldest histogram timestamp held, in order or not, ms.
    pub fn min_time(&self) -> Option<i64> {
        let in_order = self.all_chunks().map(|c| c.1).next();
        [in_order, self.ooo.first().map(|x| x.0)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Appends the histograms in `[mint, maxt]` to `out` as float histograms, in time order.
    pub fn histograms_into(&self, mint: i64, maxt: i64, out: &mut HistogramBatch) {
        if self.has_ooo_in(mint, maxt) {
            for (t, h) in self.values(mint, maxt) {
                out.ts.push(t);
                out.h.push(h.to_float());
            }
            return;
        }
        for (enc, lo, hi, data) in self.all_chunks() {
            if hi < mint || lo > maxt {
                continue;
            }
            // The head wrote these payloads itself; a chunk that fails to decode would be a
            // bug, and is skipped rather than failing the query.
            match enc {
                Encoding::Histogram => {
                    if let Ok(samples) = crate::chunk::decode_histogram_chunk(data) {
                        for (t, h) in samples {
                            if t >= mint && t <= maxt {
                                out.ts.push(t);
                                out.h.push(h.to_float_from_counts());
                            }
                        }
                    }
                }
                _ => {
                    if let Ok(samples) = crate::chunk::decode_float_histogram_chunk(data) {
                        for (t, h) in samples {
                            if t >= mint && t <= maxt {
                                out.ts.push(t);
                                out.h.push(h);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Drops the chunks wholly before `mint`; the open chunk stays while any of its samples
    /// is at or after `mint`. Returns whether any histogram is left.
    pub fn truncate_before(&mut self, mint: i64) -> bool {
        self.chunks.retain(|c| c.max_time >= mint);
        if self.cutter.open().is_some_and(|o| o.2 < mint) {
            self.close();
            self.chunks.retain(|c| c.max_time >= mint);
            // A fresh cutter: the closed chunk is gone, so is the appender state.
            self.cutter = HistogramChunkCutter::new(self.chunk_range);
        }
        self.ooo.retain(|x| x.0 >= mint);
        self.cutter.open().is_some() || !self.chunks.is_empty() || !self.ooo.is_empty()
    }

    /// Bytes of memory the histograms take.
    pub fn data_bytes(&self) -> usize {
        std::mem::size_of::<HistSeries>()
            + self
                .all_chunks()
                .map(|c| c.3.len() + std::mem::size_of::<CutHistogramChunk>())
                .sum::<usize>()
            + self.last.as_ref().map_or(0, |l| l.1.bytes())
            + self.ooo.iter().map(|x| 8 + x.1.bytes()).sum::<usize>()
    }
}

/// Why an out-of-order histogram was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OooRefusal {
    /// The same histogram is held at its timestamp.
    Duplicate,
    /// Another sample is held at its timestamp.
    Conflict,
    /// It does not validate.
    Invalid,
}

/// The histograms of a chunk the head wrote, each of the chunk's kind. The head wrote these
/// payloads itself; one that fails to decode would be a bug, and gives nothing rather than
/// failing a query.
fn decode_values(enc: Encoding, data: &[u8]) -> Vec<(i64, HistogramValue)> {
    match enc {
        Encoding::Histogram => crate::chunk::decode_histogram_chunk(data)
            .map(|v| {
                v.into_iter()
                    .map(|(t, h)| (t, HistogramValue::Int(h)))
                    .collect()
            })
            .unwrap_or_default(),
        _ => crate::chunk::decode_float_histogram_chunk(data)
            .map(|v| {
                v.into_iter()
                    .map(|(t, h)| (t, HistogramValue::Float(h)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
