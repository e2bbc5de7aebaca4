//! Streaming selection: series handed to a consumer a bounded batch at a time, so a query over
//! many series never holds all of their samples at once.
//!
//! A source hands each series either decoded or as its stored chunks; chunks are decoded by the
//! consumer ([`decode_series`]), which lets PromQL decode on its worker threads and drop each
//! series' samples as soon as its step column is computed.

use bytes::Bytes;

use super::{Series, merge_samples};
use crate::chunk::{
    ChunkError, Encoding, FloatHistogramIterator, HistogramBatch, HistogramIterator,
    ManyDecodeError, SampleBatch, decode_xor_many_at,
};
use crate::error::{Error, Result};
use crate::labels::Labels;

/// Series per batch a source aims for; a batch may be smaller, never empty.
pub const BATCH_SERIES: usize = 1024;

/// Chunks per batch a chunk source aims for at most (about 120 samples each).
pub const BATCH_CHUNKS: usize = 8192;

/// One stored chunk of a series: its time range and encoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesChunk {
    /// First sample's timestamp, ms.
    pub min_time: i64,
    /// Last sample's timestamp, ms (inclusive).
    pub max_time: i64,
    /// TSDB chunk encoding byte (1 = XOR).
    pub encoding: u8,
    /// The payload, starting with its 2-byte sample count.
    pub data: Bytes,
}

impl From<crate::store::RawChunk> for SeriesChunk {
    fn from(c: crate::store::RawChunk) -> Self {
        SeriesChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: c.encoding,
            data: c.data,
        }
    }
}

impl From<SeriesChunk> for crate::store::RawChunk {
    fn from(c: SeriesChunk) -> Self {
        crate::store::RawChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: c.encoding,
            data: c.data,
        }
    }
}

/// The samples of a streamed series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesData {
    /// Decoded samples in the selected range, sorted by time, no duplicate timestamps.
    Decoded(SampleBatch),
    /// Decoded float and native histogram samples in the selected range, each sorted by time.
    DecodedWithHistograms(SampleBatch, HistogramBatch),
    /// The chunks that overlap the selected range, ordered so that a later chunk's sample wins
    /// over an earlier one's at the same timestamp. Samples outside the range are the
    /// consumer's to drop ([`decode_series`] does).
    Chunks(Vec<SeriesChunk>),
}

impl SeriesData {
    /// Samples (decoded) or chunks × 120 (estimated) this data stands for.
    pub fn estimated_samples(&self) -> usize {
        match self {
            SeriesData::Decoded(b) => b.len(),
            SeriesData::DecodedWithHistograms(b, h) => b.len() + h.len(),
            SeriesData::Chunks(c) => c.len() * 120,
        }
    }

    /// Whether the data holds (or, as chunks, may hold) native histogram samples.
    pub fn has_histograms(&self) -> bool {
        match self {
            SeriesData::Decoded(_) => false,
            SeriesData::DecodedWithHistograms(_, h) => !h.is_empty(),
            SeriesData::Chunks(c) => c.iter().any(|c| is_histogram_encoding(c.encoding)),
        }
    }
}

/// Whether a TSDB chunk encoding byte is one of the native histogram encodings.
#[inline]
pub fn is_histogram_encoding(encoding: u8) -> bool {
    encoding == Encoding::Histogram as u8 || encoding == Encoding::FloatHistogram as u8
}

impl From<Series> for StreamSeries {
    fn from(s: Series) -> StreamSeries {
        let data = if s.histograms.is_empty() {
            SeriesData::Decoded(s.samples)
        } else {
            SeriesData::DecodedWithHistograms(s.samples, s.histograms)
        };
        StreamSeries {
            labels: s.labels,
            data,
        }
    }
}

/// A series as a stream hands it over: labels and samples. Once decoded and trimmed to the
/// range it may turn out to hold no sample (a chunk can straddle the range); consumers skip it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSeries {
    /// The series' labels, including `__name__`.
    pub labels: Labels,
    /// Its samples, decoded or as chunks.
    pub data: SeriesData,
}

/// A selection handed over in batches. Each label set comes exactly once, with all of its
/// samples in the selected range (merged across blocks), and batches follow one fixed order
/// for a given source and selection, so consumers that fold in stream order are deterministic.
pub trait SeriesStream: Send {
    /// The next batch (never empty), or `None` when the selection is exhausted.
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>>;
}

/// A stream over series already in memory (the default for sources without a streaming path).
#[derive(Debug)]
pub struct VecStream {
    series: std::vec::IntoIter<Series>,
}

impl VecStream {
    /// Streams `series` in their order, [`BATCH_SERIES`] at a time.
    pub fn new(series: Vec<Series>) -> Self {
        VecStream {
            series: series.into_iter(),
        }
    }
}

impl SeriesStream for VecStream {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        let batch: Vec<StreamSeries> = self
            .series
            .by_ref()
            .take(BATCH_SERIES)
            .map(StreamSeries::from)
            .collect();
        Ok((!batch.is_empty()).then_some(batch))
    }
}

/// A stream whose first batch was taken (to see whether it has any): that batch, then the
/// rest.
pub struct Resumed<'a> {
    first: Option<Vec<StreamSeries>>,
    rest: Box<dyn SeriesStream + 'a>,
}

impl<'a> Resumed<'a> {
    /// `first`, taken from `rest`, handed out again before the rest.
    pub fn new(first: Vec<StreamSeries>, rest: Box<dyn SeriesStream + 'a>) -> Self {
        Resumed {
            first: Some(first),
            rest,
        }
    }
}

impl std::fmt::Debug for Resumed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumed")
            .field("first", &self.first.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl SeriesStream for Resumed<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        match self.first.take() {
            Some(b) => Ok(Some(b)),
            None => self.rest.next_batch(),
        }
    }
}

/// Reusable buffers for [`decode_many`], one set per decoding thread.
#[derive(Debug, Default)]
pub struct DecodeScratch {
    /// Chunk ends of a flat decode.
    ends: Vec<usize>,
    /// [`decode_many`]'s flat batch and the series' ranges in it.
    flat: SampleBatch,
    spans: Vec<std::ops::Range<usize>>,
}

/// Decodes a streamed series' samples in `[mint, maxt]` into `out` (cleared first): what
/// [`decode_many`] does for one series.
pub fn decode_series(
    s: &StreamSeries,
    mint: i64,
    maxt: i64,
    scratch: &mut DecodeScratch,
    out: &mut SampleBatch,
) -> Result<()> {
    decode_many(
        std::slice::from_ref(s),
        mint,
        maxt,
        scratch,
        std::slice::from_mut(out),
    )
}

/// Decodes the samples in `[mint, maxt]` of `series[k]` into `outs[k]` (each cleared first),
/// merging chunks of a series that overlap in time (a later chunk wins on equal timestamps):
/// [`decode_many_flat`], copied out per series. Native histogram chunks are left to
/// [`decode_histograms`]; other encodings than XOR, and corrupt chunks, are errors naming the
/// series.
pub fn decode_many(
    series: &[StreamSeries],
    mint: i64,
    maxt: i64,
    scratch: &mut DecodeScratch,
    outs: &mut [SampleBatch],
) -> Result<()> {
    let mut flat = std::mem::take(&mut scratch.flat);
    let mut spans = std::mem::take(&mut scratch.spans);
    let res = decode_many_flat(series, mint, maxt, scratch, &mut flat, &mut spans);
    if res.is_ok() {
        for (r, out) in spans.iter().zip(outs.iter_mut()) {
            out.clear();
            out.ts.extend_from_slice(&flat.ts[r.clone()]);
            out.val.extend_from_slice(&flat.val[r.clone()]);
        }
    }
    (scratch.flat, scratch.spans) = (flat, spans);
    res
}

/// Decodes the samples in `[mint, maxt]` of every series into one flat batch `out`, pushing
/// to `spans` where each series' samples lie in it (`out` is working space, reused from call to
/// call without clearing: what lies outside `spans` is left over): what [`decode_many`] gives
/// per series, without a copy per series. All chunks go to one
/// [`decode_xor_many_flat`](crate::chunk::decode_xor_many_flat) call; a series' chunks land
/// next to each other, so when they are consecutive in time (the usual case) its span is a
/// trimmed range of them. Series whose chunks overlap are merged and appended after them.
pub fn decode_many_flat(
    series: &[StreamSeries],
    mint: i64,
    maxt: i64,
    scratch: &mut DecodeScratch,
    out: &mut SampleBatch,
    spans: &mut Vec<std::ops::Range<usize>>,
) -> Result<()> {
    spans.clear();
    let mut payloads: Vec<&[u8]> = Vec::new();
    // Per series, the range of its chunks in `payloads`.
    let mut chunk_spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(series.len());
    for s in series {
        let at = payloads.len();
        if let SeriesData::Chunks(chunks) = &s.data {
            if let Some(c) = chunks
                .iter()
                .find(|c| c.encoding != Encoding::Xor as u8 && !is_histogram_encoding(c.encoding))
            {
                return Err(Error::InvalidInput(format!(
                    "series {}: chunk encoding {} is not decoded by PromQL",
                    s.labels, c.encoding
                )));
            }
            payloads.extend(
                chunks
                    .iter()
                    .filter(|c| c.encoding == Encoding::Xor as u8)
                    .map(|c| c.data.as_ref()),
            );
        }
        chunk_spans.push(at..payloads.len());
    }
    let ends = &mut scratch.ends;
    ends.clear();
    let (mut len, err) = decode_xor_many_at(&payloads, out, 0, ends);
    if let Some(e) = err {
        return Err(chunk_error(e, series, &chunk_spans));
    }
    for (s, cs) in series.iter().zip(&chunk_spans) {
        let lo = if cs.start == 0 { 0 } else { ends[cs.start - 1] };
        let hi = if cs.is_empty() { lo } else { ends[cs.end - 1] };
        match &s.data {
            SeriesData::Decoded(b) | SeriesData::DecodedWithHistograms(b, _) => {
                let a = b.ts.partition_point(|&t| t < mint);
                let z = b.ts.partition_point(|&t| t <= maxt).max(a);
                spans.push(put_at(out, &mut len, &b.ts[a..z], &b.val[a..z]));
            }
            SeriesData::Chunks(_) => {
                // Consecutive in time: each non-empty chunk starts after the last one ended.
                let mut disjoint = true;
                let mut last: Option<i64> = None;
                for k in cs.clone() {
                    let a = if k == 0 { 0 } else { ends[k - 1] };
                    if a == ends[k] {
                        continue;
                    }
                    if last.is_some_and(|t| t >= out.ts[a]) {
                        disjoint = false;
                        break;
                    }
                    last = Some(out.ts[ends[k] - 1]);
                }
                if disjoint {
                    let ts = &out.ts[lo..hi];
                    let a = ts.partition_point(|&t| t < mint);
                    let z = ts.partition_point(|&t| t <= maxt).max(a);
                    spans.push(lo + a..lo + z);
                } else {
                    let parts: Vec<SampleBatch> = cs
                        .clone()
                        .map(|k| {
                            let a = if k == 0 { 0 } else { ends[k - 1] };
                            SampleBatch {
                                ts: out.ts[a..ends[k]].to_vec(),
                                val: out.val[a..ends[k]].to_vec(),
                            }
                        })
                        .collect();
                    let mut merged = merge_samples(&parts.iter().collect::<Vec<_>>());
                    merged.truncate_to_range(mint, maxt);
                    spans.push(put_at(out, &mut len, &merged.ts, &merged.val));
                }
            }
        }
    }
    Ok(())
}

/// Writes samples at `*len` of the working batch `out` (growing it only when too short) and
/// moves `*len` past them; returns where they lie.
fn put_at(
    out: &mut SampleBatch,
    len: &mut usize,
    ts: &[i64],
    val: &[f64],
) -> std::ops::Range<usize> {
    let (at, end) = (*len, *len + ts.len());
    if out.ts.len() < end {
        out.ts.resize(end, 0);
    }
    if out.val.len() < end {
        out.val.resize(end, 0.0);
    }
    out.ts[at..end].copy_from_slice(ts);
    out.val[at..end].copy_from_slice(val);
    *len = end;
    at..end
}

/// The error of a many-chunk decode, naming the series and chunk that failed.
fn chunk_error(
    e: ManyDecodeError,
    series: &[StreamSeries],
    chunk_spans: &[std::ops::Range<usize>],
) -> Error {
    let ManyDecodeError::Chunk { chunk, source } = e else {
        return Error::InvalidInput(e.to_string());
    };
    let k = chunk_spans
        .iter()
        .position(|r| r.contains(&chunk))
        .unwrap_or(0);
    let (i, s) = (chunk - chunk_spans[k].start, &series[k]);
    let range = match &s.data {
        SeriesData::Chunks(c) => {
            let c: Vec<&SeriesChunk> = c
                .iter()
                .filter(|c| c.encoding == Encoding::Xor as u8)
                .collect();
            format!("{}..{}", c[i].min_time, c[i].max_time)
        }
        SeriesData::Decoded(_) | SeriesData::DecodedWithHistograms(..) => String::new(),
    };
    Error::InvalidInput(format!(
        "series {}: chunk {i} ({range}): {source}",
        s.labels
    ))
}

/// Decodes the native histogram samples in `[mint, maxt]` of a streamed series into `out`
/// (cleared first), as float histograms, merging chunks that overlap in time (a later chunk
/// wins on equal timestamps). Corrupt chunks are errors naming the series.
pub fn decode_histograms(
    s: &StreamSeries,
    mint: i64,
    maxt: i64,
    out: &mut HistogramBatch,
) -> Result<()> {
    out.clear();
    match &s.data {
        SeriesData::Decoded(_) => {}
        SeriesData::DecodedWithHistograms(_, h) => {
            let a = h.ts.partition_point(|&t| t < mint);
            let z = h.ts.partition_point(|&t| t <= maxt).max(a);
            out.ts.extend_from_slice(&h.ts[a..z]);
            out.h.extend_from_slice(&h.h[a..z]);
        }
        SeriesData::Chunks(chunks) => {
            let mut parts: Vec<HistogramBatch> = Vec::new();
            for c in chunks.iter().filter(|c| is_histogram_encoding(c.encoding)) {
                if c.max_time < mint || c.min_time > maxt {
                    continue;
                }
                let fail = |e: ChunkError| {
                    Error::InvalidInput(format!(
                        "series {}: histogram chunk ({}..{}): {e}",
                        s.labels, c.min_time, c.max_time
                    ))
                };
                let mut part = HistogramBatch::new();
                decode_histogram_chunk_range(c.encoding, &c.data, (mint, maxt), &mut part)
                    .map_err(fail)?;
                parts.push(part);
            }
            let disjoint = parts
                .iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .windows(2)
                .all(|w| w[0].ts.last() < w[1].ts.first());
            if disjoint {
                for p in parts {
                    out.ts.extend(p.ts);
                    out.h.extend(p.h);
                }
            } else {
                *out = HistogramBatch::merge(&parts.iter().collect::<Vec<_>>());
            }
        }
    }
    Ok(())
}

/// Appends the samples of one native histogram chunk (`encoding` 2 or 3; integer histograms
/// as float histograms) to `out`. Other encodings are refused as unknown.
pub fn decode_histogram_chunk_into(
    encoding: u8,
    data: &[u8],
    out: &mut HistogramBatch,
) -> std::result::Result<(), ChunkError> {
    decode_histogram_chunk_range(encoding, data, (i64::MIN, i64::MAX), out)
}

/// [`decode_histogram_chunk_into`] of the samples in `[mint, maxt]` (ms) only: samples before
/// `mint` are stepped over without building their histograms, and decoding stops at the
/// first sample after `maxt` (a chunk's samples are in time order).
pub fn decode_histogram_chunk_range(
    encoding: u8,
    data: &[u8],
    (mint, maxt): (i64, i64),
    out: &mut HistogramBatch,
) -> std::result::Result<(), ChunkError> {
    // Both iterators step the same way; each sample is written straight as a float histogram.
    macro_rules! take {
        ($it:expr) => {{
            let mut it = $it;
            while let Some(t) = it.next_sample()? {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    let mut h = crate::histogram::FloatHistogram::default();
                    it.float_histogram_into(&mut h);
                    out.push(t, h);
                }
            }
        }};
    }
    if encoding == Encoding::Histogram as u8 {
        take!(HistogramIterator::new(data)?);
    } else if encoding == Encoding::FloatHistogram as u8 {
        take!(FloatHistogramIterator::new(data)?);
    } else {
        return Err(ChunkError::UnknownEncoding { byte: encoding });
    }
    Ok(())
}

/// Drains `stream` into series with decoded samples, dropping those with no sample in
/// `[mint, maxt]`: what [`super::Queryable::select`] answers for the same selection.
pub fn collect_stream(
    mut stream: Box<dyn SeriesStream + '_>,
    mint: i64,
    maxt: i64,
) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    let mut scratch = DecodeScratch::default();
    while let Some(batch) = stream.next_batch()? {
        for s in batch {
            let mut samples = SampleBatch::new();
            decode_series(&s, mint, maxt, &mut scratch, &mut samples)?;
            let mut histograms = HistogramBatch::new();
            decode_histograms(&s, mint, maxt, &mut histograms)?;
            let s = Series {
                labels: s.labels,
                samples,
                histograms,
            };
            if !s.is_empty() {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Drains `stream` into series with labels only (the series API's answer), nothing decoded.
pub fn collect_labels(mut stream: Box<dyn SeriesStream + '_>) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    while let Some(batch) = stream.next_batch()? {
        out.extend(
            batch
                .into_iter()
                .map(|s| Series::floats(s.labels, SampleBatch::new())),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode_xor;

    fn chunk(ts: &[i64], v: f64) -> SeriesChunk {
        let val = vec![v; ts.len()];
        SeriesChunk {
            min_time: ts[0],
            max_time: ts[ts.len() - 1],
            encoding: Encoding::Xor as u8,
            data: Bytes::from(encode_xor(ts, &val)),
        }
    }

    fn series(data: SeriesData) -> StreamSeries {
        StreamSeries {
            labels: Labels::from_pairs([("__name__", "x")]),
            data,
        }
    }

    #[test]
    fn consecutive_chunks_are_concatenated_and_trimmed() {
        let s = series(SeriesData::Chunks(vec![
            chunk(&[10, 20, 30], 1.0),
            chunk(&[40, 50], 2.0),
        ]));
        let mut out = SampleBatch::new();
        decode_series(&s, 20, 40, &mut DecodeScratch::default(), &mut out).unwrap();
        assert_eq!(out.ts, vec![20, 30, 40]);
        assert_eq!(out.val, vec![1.0, 1.0, 2.0]);
    }

    #[test]
    fn overlapping_chunks_merge_with_the_later_one_winning() {
        let s = series(SeriesData::Chunks(vec![
            chunk(&[10, 20, 30], 1.0),
            chunk(&[20, 25], 2.0),
        ]));
        let mut out = SampleBatch::new();
        decode_series(&s, 0, 100, &mut DecodeScratch::default(), &mut out).unwrap();
        assert_eq!(out.ts, vec![10, 20, 25, 30]);
        assert_eq!(out.val, vec![1.0, 2.0, 2.0, 1.0]);
    }

    #[test]
    fn an_empty_chunk_between_overlapping_ones_does_not_hide_the_overlap() {
        let empty = SeriesChunk {
            min_time: 15,
            max_time: 15,
            encoding: Encoding::Xor as u8,
            data: Bytes::from(encode_xor(&[], &[])),
        };
        let s = series(SeriesData::Chunks(vec![
            chunk(&[10, 20], 1.0),
            empty,
            chunk(&[20, 25], 2.0),
        ]));
        let mut out = SampleBatch::new();
        decode_series(&s, 0, 100, &mut DecodeScratch::default(), &mut out).unwrap();
        assert_eq!(out.ts, vec![10, 20, 25]);
        assert_eq!(out.val, vec![1.0, 2.0, 2.0]);
    }

    #[test]
    fn corrupt_and_foreign_chunks_are_errors_naming_the_series() {
        let mut bad = chunk(&[10, 20, 30], 1.0);
        bad.data = bad.data.slice(..3);
        let mut out = SampleBatch::new();
        let err = decode_series(
            &series(SeriesData::Chunks(vec![bad])),
            0,
            100,
            &mut DecodeScratch::default(),
            &mut out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("__name__=\"x\""), "{err}");
        let mut foreign = chunk(&[10], 1.0);
        foreign.encoding = 7;
        let err = decode_series(
            &series(SeriesData::Chunks(vec![foreign])),
            0,
            100,
            &mut DecodeScratch::default(),
            &mut out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("encoding 7"), "{err}");
    }

    proptest::proptest! {
        /// Both decodes give each series exactly its chunks' samples merged and trimmed:
        /// consecutive, overlapping and empty chunks, decoded series, trimmed ranges.
        #[test]
        fn decodes_equal_each_series_chunks_merged_and_trimmed(
            shapes in proptest::collection::vec(
                proptest::collection::vec((0i64..400, 0usize..40, 1i64..20), 0..5),
                1..40,
            ),
            decoded_every in 2usize..9,
            mint in -50i64..300,
            len in 0i64..600,
        ) {
            let maxt = mint + len;
            let series: Vec<StreamSeries> = shapes
                .iter()
                .enumerate()
                .map(|(i, cs)| {
                    let chunks: Vec<SeriesChunk> = cs
                        .iter()
                        .enumerate()
                        .map(|(k, &(t0, n, gap))| {
                            let ts: Vec<i64> = (0..n as i64).map(|j| t0 + j * gap).collect();
                            let val: Vec<f64> = ts.iter().map(|&t| (t * 10 + k as i64) as f64).collect();
                            SeriesChunk {
                                min_time: ts.first().copied().unwrap_or(t0),
                                max_time: ts.last().copied().unwrap_or(t0),
                                encoding: Encoding::Xor as u8,
                                data: Bytes::from(encode_xor(&ts, &val)),
                            }
                        })
                        .collect();
                    let mut s = series(SeriesData::Chunks(chunks));
                    if i % decoded_every == 0 {
                        let mut b = SampleBatch::new();
                        decode_series(&s, i64::MIN, i64::MAX, &mut DecodeScratch::default(), &mut b).unwrap();
                        s.data = SeriesData::Decoded(b);
                    }
                    s
                })
                .collect();
            // The reference: each chunk decoded on its own, a series' chunks merged (a later
            // one winning on equal timestamps), then trimmed to the range.
            let want: Vec<SampleBatch> = series
                .iter()
                .map(|s| {
                    let mut b = match &s.data {
                        SeriesData::Decoded(b) | SeriesData::DecodedWithHistograms(b, _) => {
                            b.clone()
                        }
                        SeriesData::Chunks(cs) => {
                            let parts: Vec<SampleBatch> = cs
                                .iter()
                                .map(|c| {
                                    let mut p = SampleBatch::new();
                                    crate::chunk::decode_xor_into(&c.data, &mut p).unwrap();
                                    p
                                })
                                .collect();
                            merge_samples(&parts.iter().collect::<Vec<_>>())
                        }
                    };
                    b.truncate_to_range(mint, maxt);
                    b
                })
                .collect();
            let mut per_series = vec![SampleBatch::new(); series.len()];
            decode_many(&series, mint, maxt, &mut DecodeScratch::default(), &mut per_series).unwrap();
            proptest::prop_assert_eq!(&per_series, &want);
            let (mut flat, mut spans) = (SampleBatch::new(), Vec::new());
            decode_many_flat(&series, mint, maxt, &mut DecodeScratch::default(), &mut flat, &mut spans).unwrap();
            proptest::prop_assert_eq!(spans.len(), series.len());
            for (w, r) in want.iter().zip(&spans) {
                proptest::prop_assert_eq!(&flat.ts[r.clone()], w.ts.as_slice());
                proptest::prop_assert_eq!(&flat.val[r.clone()], w.val.as_slice());
            }
        }
    }

    #[test]
    fn flat_decode_names_the_corrupt_series() {
        let mut bad = chunk(&[10, 20, 30], 1.0);
        bad.data = bad.data.slice(..3);
        let s = [
            series(SeriesData::Chunks(vec![chunk(&[1, 2], 1.0)])),
            series(SeriesData::Chunks(vec![bad])),
        ];
        let err = decode_many_flat(
            &s,
            0,
            100,
            &mut DecodeScratch::default(),
            &mut SampleBatch::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("chunk 0 (10..30)"), "{err}");
    }

    #[test]
    fn vec_stream_hands_out_bounded_batches_in_order() {
        let all: Vec<Series> = (0..BATCH_SERIES + 5)
            .map(|i| {
                Series::floats(
                    Labels::from_pairs([("i", format!("{i:05}"))]),
                    SampleBatch {
                        ts: vec![i as i64],
                        val: vec![1.0],
                    },
                )
            })
            .collect();
        let mut st = VecStream::new(all.clone());
        let a = st.next_batch().unwrap().unwrap();
        let b = st.next_batch().unwrap().unwrap();
        assert_eq!((a.len(), b.len()), (BATCH_SERIES, 5));
        assert!(st.next_batch().unwrap().is_none());
        let got = collect_stream(Box::new(VecStream::new(all.clone())), 0, i64::MAX).unwrap();
        assert_eq!(got, all);
    }

    fn hist_chunk(ts: &[i64], count: u64) -> SeriesChunk {
        use crate::chunk::{HistogramAppend, HistogramAppender};
        use crate::histogram::{Histogram, Span};
        let mut app = HistogramAppender::new();
        for &t in ts {
            let h = Histogram {
                schema: 0,
                count,
                sum: count as f64,
                positive_spans: vec![Span::new(0, 1)],
                positive_buckets: vec![count as i64],
                ..Histogram::default()
            };
            assert!(matches!(
                app.append(None, t, &h).unwrap(),
                HistogramAppend::Appended | HistogramAppend::Recoded
            ));
        }
        SeriesChunk {
            min_time: ts[0],
            max_time: ts[ts.len() - 1],
            encoding: Encoding::Histogram as u8,
            data: Bytes::from(app.into_bytes()),
        }
    }

    #[test]
    fn histogram_chunks_decode_apart_from_float_chunks() {
        let s = series(SeriesData::Chunks(vec![
            chunk(&[10, 20], 1.0),
            hist_chunk(&[30, 40, 50], 3),
            hist_chunk(&[50, 60], 5),
            chunk(&[70], 2.0),
        ]));
        assert!(s.data.has_histograms());
        let mut floats = SampleBatch::new();
        decode_series(&s, 0, 100, &mut DecodeScratch::default(), &mut floats).unwrap();
        assert_eq!(floats.ts, vec![10, 20, 70]);
        let mut h = HistogramBatch::new();
        decode_histograms(&s, 35, 100, &mut h).unwrap();
        assert_eq!(h.ts, vec![40, 50, 60]);
        // The later chunk wins at 50.
        assert_eq!(
            h.h.iter().map(|h| h.count).collect::<Vec<_>>(),
            vec![3.0, 5.0, 5.0]
        );
        let got = collect_stream(Box::new(VecStream::new(Vec::new())), 0, 1).unwrap();
        assert!(got.is_empty());
        let mut bad = hist_chunk(&[30], 3);
        bad.data = Bytes::from_static(&[0, 1, 0xff]);
        let err =
            decode_histograms(&series(SeriesData::Chunks(vec![bad])), 0, 100, &mut h).unwrap_err();
        assert!(
            err.to_string().contains("histogram chunk (30..30)"),
            "{err}"
        );
    }

    /// Decoding a chunk's `[mint, maxt]` gives what decoding it all and keeping that range
    /// gives, for every range over and around the samples.
    #[test]
    fn a_histogram_chunk_range_decodes_as_the_whole_chunk_trimmed() {
        let ts: Vec<i64> = (0..40).map(|k| 1_000 + k * 15).collect();
        let c = hist_chunk(&ts, 7);
        let mut all = HistogramBatch::new();
        decode_histogram_chunk_into(c.encoding, &c.data, &mut all).unwrap();
        assert_eq!(all.ts, ts);
        for mint in (980..1_620).step_by(23) {
            for maxt in (mint - 20..1_640).step_by(31) {
                let mut want = all.clone();
                want.truncate_to_range(mint, maxt);
                let mut got = HistogramBatch::new();
                decode_histogram_chunk_range(c.encoding, &c.data, (mint, maxt), &mut got).unwrap();
                assert_eq!(got, want, "[{mint}, {maxt}]");
            }
        }
    }
}
