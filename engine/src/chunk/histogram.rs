//! Integer native histogram chunks (encoding 2), bit for bit as Prometheus 3 writes them
//! (`docs/formats/tsdb-block.md`, Histogram chunk payload).
//!
//! After the 3-byte header and the layout, sample 0 holds its timestamp, count and zero count
//! as varbits, its sum as 64 raw bits and its bucket deltas as varbit integers; every later
//! sample holds the delta of delta of its timestamp, count, zero count and of each bucket
//! delta as varbit integers, and its sum XOR-encoded. A stale marker (sum = stale NaN) writes
//! no buckets.
//!
//! [`HistogramAppender::append`] decides, as Prometheus's head does, whether a sample fits the
//! chunk, needs the chunk rewritten with more buckets, or starts a new chunk.

use std::borrow::Cow;

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};
use super::histogram_layout::{
    CounterResetHeader, HEADER_BYTES, Layout, MAX_HISTOGRAM_SAMPLES, counter_reset_hint,
    new_writer, parse_header, read_count, read_header, read_layout, write_count, write_header,
    write_layout,
};
use super::histogram_recode::{
    Insert, adjust_for_inserts, expand_int_spans_and_buckets, expand_spans_both_ways, insert,
};
use super::varbit::{
    XorState, put_varbit_int, put_varbit_uint, read_bucket_dods, read_varbit_int, read_varbit_uint,
    xor_read, xor_write,
};
use crate::histogram::{
    CounterResetHint, FloatHistogram, FloatValue, Histogram, HistogramError, Side, Span,
    count_buckets, custom_bounds_match, is_custom_buckets_schema,
};

/// What appending a sample did to a histogram chunk.
#[derive(Debug)]
pub enum HistogramAppend<A> {
    /// The sample went into the chunk.
    Appended,
    /// The sample brought buckets the chunk lacked: the chunk was rewritten with the wider
    /// layout, then took the sample. Its bytes changed as a whole.
    Recoded,
    /// The sample does not fit (a counter reset, a new schema or zero threshold, a switch
    /// between gauge and counter, a stale marker before it): it starts this new chunk, with its
    /// counter-reset header set, and the current chunk is complete.
    NewChunk(A),
}

/// Whether a sample fits a chunk, and the inserts that make it fit.
#[derive(Debug, Default)]
pub(crate) struct Fit {
    pub ok: bool,
    /// For counter histograms, the header a new chunk starting with the sample would get.
    pub header: CounterResetHeader,
    pub forward_pos: Vec<Insert>,
    pub forward_neg: Vec<Insert>,
    pub backward_pos: Vec<Insert>,
    pub backward_neg: Vec<Insert>,
    /// For gauge histograms, the union of the chunk's and the sample's spans.
    pub merged_pos: Vec<Span>,
    pub merged_neg: Vec<Span>,
}

/// Incremental encoder of an integer histogram chunk, the counterpart of Prometheus's
/// `HistogramAppender`: after every append, [`bytes`](HistogramAppender::bytes) is a complete
/// payload.
#[derive(Debug, Clone)]
pub struct HistogramAppender {
    w: BitWriter,
    layout: Layout,
    t: i64,
    cnt: u64,
    z_cnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    z_cnt_delta: i64,
    /// The last sample's bucket deltas.
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    /// How each bucket delta changed at the last sample.
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: XorState,
}

impl Default for HistogramAppender {
    fn default() -> Self {
        HistogramAppender::new()
    }
}

impl HistogramAppender {
    /// An appender for an empty chunk (header `Unknown`).
    pub fn new() -> Self {
        HistogramAppender {
            w: new_writer(125),
            layout: Layout::default(),
            t: i64::MIN,
            cnt: 0,
            z_cnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            z_cnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: XorState::UNSET,
        }
    }

    /// An appender that continues an existing payload, in the state it would have had if it had
    /// written every sample itself (the payload is decoded and its samples written afresh, so
    /// appending the rest of a series gives the same bytes as encoding it in one go).
    pub fn from_payload(data: &[u8]) -> Result<Self, ChunkError> {
        let mut it = HistogramIterator::new(data)?;
        let mut a = HistogramAppender::new();
        let mut h = Histogram::default();
        while let Some(t) = it.next_sample()? {
            it.histogram_into(&mut h);
            a.append_raw(t, &h)?;
        }
        a.set_counter_reset_header(it.counter_reset_header());
        Ok(a)
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> usize {
        usize::from(read_count(&self.w))
    }

    /// The payload so far: header, then the bit stream, zero-padded.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// The finished payload.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_bytes()
    }

    /// The chunk's counter-reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        read_header(&self.w)
    }

    /// Sets the chunk's counter-reset header.
    pub fn set_counter_reset_header(&mut self, h: CounterResetHeader) {
        write_header(&mut self.w, h);
    }

    /// Timestamp of the last sample, ms (`i64::MIN` before the first).
    pub fn last_time(&self) -> i64 {
        self.t
    }

    /// The header a new chunk starting with `h` right after this one gets: whether `h` is a
    /// counter reset against this chunk's last sample, as far as Prometheus can tell.
    pub fn counter_reset_after(&self, h: &Histogram) -> CounterResetHeader {
        self.fit(h).header
    }

    /// Appends `h` at `t` (ms) as Prometheus's head does. `prev` is the chunk this one follows,
    /// when this one is empty and was just cut from it: the new chunk's counter-reset header is
    /// then worked out against it.
    ///
    /// Fails only on a histogram that does not [validate](Histogram::validate) (stale markers
    /// are not checked, their buckets are dropped) or on a full chunk.
    pub fn append(
        &mut self,
        prev: Option<&HistogramAppender>,
        t: i64,
        h: &Histogram,
    ) -> Result<HistogramAppend<HistogramAppender>, ChunkError> {
        if !h.is_stale() {
            h.validate()
                .map_err(|source| ChunkError::InvalidHistogram { source })?;
        }
        self.append_valid(prev, t, h)
    }

    /// [`append`](Self::append) of a histogram already validated (or a stale marker).
    pub(crate) fn append_valid(
        &mut self,
        prev: Option<&HistogramAppender>,
        t: i64,
        h: &Histogram,
    ) -> Result<HistogramAppend<HistogramAppender>, ChunkError> {
        if self.num_samples() == 0 {
            self.append_raw(t, h)?;
            if h.counter_reset_hint == CounterResetHint::Gauge {
                self.set_counter_reset_header(CounterResetHeader::Gauge);
            } else if h.counter_reset_hint == CounterResetHint::CounterReset {
                self.set_counter_reset_header(CounterResetHeader::CounterReset);
            } else if let Some(prev) = prev {
                self.set_counter_reset_header(prev.fit(h).header);
            }
            return Ok(HistogramAppend::Appended);
        }
        let gauge = h.counter_reset_hint == CounterResetHint::Gauge;
        let fit = if gauge {
            self.fit_gauge(h)
        } else {
            self.fit(h)
        };
        if !fit.ok || (!gauge && fit.header != CounterResetHeader::NotCounterReset) {
            let mut next = HistogramAppender::new();
            next.set_counter_reset_header(if gauge {
                CounterResetHeader::Gauge
            } else {
                fit.header
            });
            next.append_raw(t, h)?;
            return Ok(HistogramAppend::NewChunk(next));
        }
        let mut h = Cow::Borrowed(h);
        if !fit.backward_pos.is_empty() || !fit.backward_neg.is_empty() {
            let hm = h.to_mut();
            if gauge {
                hm.positive_spans = fit.merged_pos;
                hm.negative_spans = fit.merged_neg;
            } else if fit.forward_pos.is_empty() && fit.forward_neg.is_empty() {
                hm.positive_spans = self.layout.positive_spans.clone();
                hm.negative_spans = self.layout.negative_spans.clone();
            } else {
                hm.positive_spans = adjust_for_inserts(&hm.positive_spans, &fit.backward_pos);
                hm.negative_spans = adjust_for_inserts(&hm.negative_spans, &fit.backward_neg);
            }
            widen_buckets(
                &mut hm.positive_buckets,
                &hm.positive_spans,
                &fit.backward_pos,
            );
            widen_buckets(
                &mut hm.negative_buckets,
                &hm.negative_spans,
                &fit.backward_neg,
            );
        }
        if !fit.forward_pos.is_empty() || !fit.forward_neg.is_empty() {
            self.recode(
                &fit.forward_pos,
                &fit.forward_neg,
                &h.positive_spans,
                &h.negative_spans,
            )?;
            self.append_raw(t, &h)?;
            return Ok(HistogramAppend::Recoded);
        }
        self.append_raw(t, &h)?;
        Ok(HistogramAppend::Appended)
    }

    /// Whether counter histogram `h` fits after the chunk's last sample: the same schema, zero
    /// threshold and custom bounds, no count going down, no bucket in use disappearing.
    pub(crate) fn fit(&self, h: &Histogram) -> Fit {
        let mut fit = Fit {
            header: CounterResetHeader::NotCounterReset,
            ..Fit::default()
        };
        let reset = |mut fit: Fit, header| {
            fit.header = header;
            fit
        };
        if self.num_samples() > 0 && self.counter_reset_header() == CounterResetHeader::Gauge {
            return fit;
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            return reset(fit, CounterResetHeader::CounterReset);
        }
        if h.is_stale() {
            fit.ok = true;
            return fit;
        }
        if super::is_stale_nan(self.sum.value) {
            return reset(fit, CounterResetHeader::Unknown);
        }
        if h.count < self.cnt {
            return reset(fit, CounterResetHeader::CounterReset);
        }
        if h.schema != self.layout.schema || h.zero_threshold != self.layout.zero_threshold {
            return reset(fit, CounterResetHeader::Unknown);
        }
        if is_custom_buckets_schema(h.schema)
            && !custom_bounds_match(&h.custom_values, &self.layout.custom_values)
        {
            return reset(fit, CounterResetHeader::CounterReset);
        }
        if h.zero_count < self.z_cnt {
            return reset(fit, CounterResetHeader::CounterReset);
        }
        let Some((fp, bp)) = expand_int_spans_and_buckets(
            &self.layout.positive_spans,
            &h.positive_spans,
            &self.p_buckets,
            &h.positive_buckets,
        ) else {
            return reset(fit, CounterResetHeader::CounterReset);
        };
        let Some((fneg, bneg)) = expand_int_spans_and_buckets(
            &self.layout.negative_spans,
            &h.negative_spans,
            &self.n_buckets,
            &h.negative_buckets,
        ) else {
            return reset(fit, CounterResetHeader::CounterReset);
        };
        fit.ok = true;
        (fit.forward_pos, fit.backward_pos) = (fp, bp);
        (fit.forward_neg, fit.backward_neg) = (fneg, bneg);
        fit
    }

    /// Whether gauge histogram `h` fits: a gauge chunk with the same schema, zero threshold
    /// and custom bounds, its last sample not a stale marker unless `h` is one.
    fn fit_gauge(&self, h: &Histogram) -> Fit {
        let mut fit = Fit::default();
        if self.num_samples() > 0 && self.counter_reset_header() != CounterResetHeader::Gauge {
            return fit;
        }
        if h.is_stale() {
            fit.ok = true;
            return fit;
        }
        if super::is_stale_nan(self.sum.value)
            || h.schema != self.layout.schema
            || h.zero_threshold != self.layout.zero_threshold
            || (is_custom_buckets_schema(h.schema)
                && !custom_bounds_match(&h.custom_values, &self.layout.custom_values))
        {
            return fit;
        }
        (fit.forward_pos, fit.backward_pos, fit.merged_pos) =
            expand_spans_both_ways(&self.layout.positive_spans, &h.positive_spans);
        (fit.forward_neg, fit.backward_neg, fit.merged_neg) =
            expand_spans_both_ways(&self.layout.negative_spans, &h.negative_spans);
        fit.ok = true;
        fit
    }

    /// Rewrites the chunk with the layout `p_spans`/`n_spans`, every sample gaining the empty
    /// buckets the inserts describe; the counter-reset header is kept.
    fn recode(
        &mut self,
        p_inserts: &[Insert],
        n_inserts: &[Insert],
        p_spans: &[Span],
        n_spans: &[Span],
    ) -> Result<(), ChunkError> {
        let old = std::mem::take(self);
        let mut it = HistogramIterator::new(old.bytes())?;
        let mut h = Histogram::default();
        while let Some(t) = it.next_sample()? {
            it.histogram_into(&mut h);
            h.positive_spans.clear();
            h.positive_spans.extend_from_slice(p_spans);
            h.negative_spans.clear();
            h.negative_spans.extend_from_slice(n_spans);
            widen_buckets(&mut h.positive_buckets, p_spans, p_inserts);
            widen_buckets(&mut h.negative_buckets, n_spans, n_inserts);
            self.append_raw(t, &h)?;
        }
        self.set_counter_reset_header(old.counter_reset_header());
        Ok(())
    }

    /// Writes a sample that fits the chunk's layout (or starts it), with no checks beyond
    /// the sample count.
    pub(crate) fn append_raw(&mut self, t: i64, h: &Histogram) -> Result<(), ChunkError> {
        let num = read_count(&self.w);
        if usize::from(num) >= MAX_HISTOGRAM_SAMPLES {
            return Err(ChunkError::TooManySamples {
                max: MAX_HISTOGRAM_SAMPLES,
            });
        }
        let stale;
        let h = if h.is_stale() {
            // A stale marker writes nothing but its sum, and no layout of its own.
            stale = Histogram {
                sum: h.sum,
                ..Histogram::default()
            };
            &stale
        } else {
            h
        };
        let (mut t_delta, mut cnt_delta, mut z_cnt_delta) = (0, 0, 0);
        if num == 0 {
            write_layout(
                &mut self.w,
                h.schema,
                h.zero_threshold,
                &h.positive_spans,
                &h.negative_spans,
                &h.custom_values,
            );
            self.layout = Layout {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                positive_spans: h.positive_spans.clone(),
                negative_spans: h.negative_spans.clone(),
                custom_values: h.custom_values.clone(),
            };
            let np = count_buckets(&h.positive_spans) as usize;
            let nn = count_buckets(&h.negative_spans) as usize;
            self.p_buckets = vec![0; np];
            self.p_deltas = vec![0; np];
            self.n_buckets = vec![0; nn];
            self.n_deltas = vec![0; nn];
            put_varbit_int(&mut self.w, t);
            put_varbit_uint(&mut self.w, h.count);
            put_varbit_uint(&mut self.w, h.zero_count);
            self.w.write_bits(h.sum.to_bits(), 64);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(&mut self.w, b);
            }
            self.sum.value = h.sum;
        } else {
            // Sample 1 needs no case of its own: with the deltas still 0, its delta of delta
            // is its delta.
            t_delta = t.wrapping_sub(self.t);
            cnt_delta = (h.count as i64).wrapping_sub(self.cnt as i64);
            z_cnt_delta = (h.zero_count as i64).wrapping_sub(self.z_cnt as i64);
            let mut cnt_dod = cnt_delta.wrapping_sub(self.cnt_delta);
            let mut z_cnt_dod = z_cnt_delta.wrapping_sub(self.z_cnt_delta);
            if h.is_stale() {
                (cnt_dod, z_cnt_dod) = (0, 0);
                // The counts move on as a reader moves them past the zero delta-of-deltas, so
                // that a sample after the marker (which only a resumed foreign payload holds:
                // `append` starts a new chunk) reads back as written.
                (cnt_delta, z_cnt_delta) = (self.cnt_delta, self.z_cnt_delta);
            }
            put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            put_varbit_int(&mut self.w, cnt_dod);
            put_varbit_int(&mut self.w, z_cnt_dod);
            xor_write(&mut self.w, &mut self.sum, h.sum);
            write_bucket_dods(
                &mut self.w,
                &h.positive_buckets,
                &self.p_buckets,
                &mut self.p_deltas,
            );
            write_bucket_dods(
                &mut self.w,
                &h.negative_buckets,
                &self.n_buckets,
                &mut self.n_deltas,
            );
        }
        write_count(&mut self.w, num + 1);
        self.t = t;
        if h.is_stale() && num > 0 {
            self.cnt = (self.cnt as i64).wrapping_add(cnt_delta) as u64;
            self.z_cnt = (self.z_cnt as i64).wrapping_add(z_cnt_delta) as u64;
        } else {
            self.cnt = h.count;
            self.z_cnt = h.zero_count;
        }
        self.t_delta = t_delta;
        self.cnt_delta = cnt_delta;
        self.z_cnt_delta = z_cnt_delta;
        copy_prefix(&mut self.p_buckets, &h.positive_buckets);
        copy_prefix(&mut self.n_buckets, &h.negative_buckets);
        Ok(())
    }
}

/// Writes each bucket's delta of delta and records its new delta.
fn write_bucket_dods(w: &mut BitWriter, buckets: &[i64], prev: &[i64], deltas: &mut [i64]) {
    for (i, &b) in buckets.iter().enumerate() {
        let delta = b.wrapping_sub(prev.get(i).copied().unwrap_or(0));
        let last = deltas.get(i).copied().unwrap_or(0);
        put_varbit_int(w, delta.wrapping_sub(last));
        if let Some(d) = deltas.get_mut(i) {
            *d = delta;
        }
    }
}

/// Copies as much of `src` as fits into `dst`.
fn copy_prefix<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
}

/// Widens delta-encoded `buckets` to the layout `spans` with the empty buckets `inserts` name.
fn widen_buckets(buckets: &mut Vec<i64>, spans: &[Span], inserts: &[Insert]) {
    if inserts.is_empty() {
        return;
    }
    let mut out = vec![0; count_buckets(spans) as usize];
    insert(buckets, &mut out, inserts, true);
    *buckets = out;
}

/// Sample iterator over an integer histogram payload.
///
/// Never panics; a payload that is cut short or corrupt gives a [`ChunkError`], after which
/// every call returns that error again. Counts read from the payload (spans, buckets, custom
/// bounds) are checked against the bits left before anything is allocated for them.
#[derive(Debug, Clone)]
pub struct HistogramIterator<'a> {
    r: BitReader<'a>,
    num_total: usize,
    num_read: usize,
    header: CounterResetHeader,
    layout: Layout,
    t: i64,
    cnt: u64,
    z_cnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    z_cnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    /// The current sample's absolute bucket counts as floats, written as the buckets are read.
    p_floats: Vec<f64>,
    n_floats: Vec<f64>,
    sum: XorState,
    err: Option<ChunkError>,
}

impl<'a> HistogramIterator<'a> {
    /// An iterator before the first sample of `data`; fails only if the 3-byte header is
    /// missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let (num_total, header) = parse_header(data)?;
        Ok(HistogramIterator {
            r: BitReader::new(data, HEADER_BYTES * 8),
            num_total,
            num_read: 0,
            header,
            layout: Layout::default(),
            t: 0,
            cnt: 0,
            z_cnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            z_cnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            p_floats: Vec::new(),
            n_floats: Vec::new(),
            sum: XorState::READER,
            err: None,
        })
    }

    /// Number of samples the header announces.
    pub fn num_samples(&self) -> usize {
        self.num_total
    }

    /// The chunk's counter-reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        self.header
    }

    /// Moves to the next sample and returns its timestamp (ms); `Ok(None)` after the last.
    pub fn next_sample(&mut self) -> Result<Option<i64>, ChunkError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        if self.num_read >= self.num_total {
            return Ok(None);
        }
        let res = if self.num_read == 0 {
            self.read_first()
        } else {
            self.read_next()
        };
        match res {
            Ok(()) => {
                self.num_read += 1;
                Ok(Some(self.t))
            }
            Err(e) => {
                self.err = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Decodes the next sample as a new [`Histogram`]; `Ok(None)` after the last.
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible, so it cannot be Iterator::next"
    )]
    pub fn next(&mut self) -> Result<Option<(i64, Histogram)>, ChunkError> {
        let Some(t) = self.next_sample()? else {
            return Ok(None);
        };
        let mut h = Histogram::default();
        self.histogram_into(&mut h);
        Ok(Some((t, h)))
    }

    /// Moves to the first sample at or after `t` (ms) and returns its timestamp; never moves
    /// back, so a current sample that qualifies is returned again.
    pub fn seek(&mut self, t: i64) -> Result<Option<i64>, ChunkError> {
        if self.num_read > 0 && self.err.is_none() && self.t >= t {
            return Ok(Some(self.t));
        }
        while let Some(st) = self.next_sample()? {
            if st >= t {
                return Ok(Some(st));
            }
        }
        Ok(None)
    }

    /// The counter-reset hint of the current sample, as Prometheus reports it (see
    /// [`counter_reset_hint`]).
    pub fn hint(&self) -> CounterResetHint {
        counter_reset_hint(self.header, self.num_read.saturating_sub(1))
    }

    /// Writes the current sample into `out`, reusing its buffers. A stale marker comes out as
    /// [`Histogram::stale_marker`].
    pub fn histogram_into(&self, out: &mut Histogram) {
        if super::is_stale_nan(self.sum.value) {
            out.clone_from(&Histogram::stale_marker());
            return;
        }
        out.counter_reset_hint = self.hint();
        out.schema = self.layout.schema;
        out.zero_threshold = self.layout.zero_threshold;
        out.zero_count = self.z_cnt;
        out.count = self.cnt;
        out.sum = self.sum.value;
        out.positive_spans.clone_from(&self.layout.positive_spans);
        out.negative_spans.clone_from(&self.layout.negative_spans);
        out.positive_buckets.clone_from(&self.p_buckets);
        out.negative_buckets.clone_from(&self.n_buckets);
        out.custom_values = self.layout.custom_values.clone();
    }

    /// Whether the current sample is a stale marker.
    pub fn is_stale(&self) -> bool {
        super::is_stale_nan(self.sum.value)
    }

    /// Whether the current sample is the chunk's last.
    pub fn is_last(&self) -> bool {
        self.num_read == self.num_total
    }

    /// Writes the current sample into `out` without its buckets: count, sum, zero bucket,
    /// schema, custom bounds and hint as [`float_histogram_into`](Self::float_histogram_into)
    /// writes them, spans and buckets left empty (their allocations kept). For readers that
    /// need the count and sum only.
    pub fn float_stats_into(&self, out: &mut FloatHistogram) {
        self.layout.stats_into(
            out,
            self.hint(),
            self.z_cnt as f64,
            self.cnt as f64,
            self.sum.value,
        );
    }

    /// Writes the current sample into `out` with float counts, as
    /// [`Histogram::to_float_from_counts`] reads them.
    pub fn float_histogram_into(&self, out: &mut FloatHistogram) {
        if super::is_stale_nan(self.sum.value) {
            out.clone_from(&FloatHistogram::stale_marker());
            return;
        }
        out.counter_reset_hint = self.hint();
        out.schema = self.layout.schema;
        out.zero_threshold = self.layout.zero_threshold;
        out.zero_count = self.z_cnt as f64;
        out.count = self.cnt as f64;
        out.sum = self.sum.value;
        out.positive_spans.clone_from(&self.layout.positive_spans);
        out.negative_spans.clone_from(&self.layout.negative_spans);
        // Each bucket the float nearest its absolute count, as Prometheus's chunk iterator
        // hands it to PromQL (worked out as the buckets were read).
        out.positive_buckets.clone_from(&self.p_floats);
        out.negative_buckets.clone_from(&self.n_floats);
        out.custom_values = self.layout.custom_values.clone();
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            sample: self.num_read,
            num_samples: self.num_total,
            bit_offset: self.r.bit_pos() as u64,
            bit_len: self.r.bit_len() as u64,
        }
    }

    fn check(&self) -> Result<(), ChunkError> {
        if self.r.overrun() {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Sample 0: the layout, then raw fields.
    fn read_first(&mut self) -> Result<(), ChunkError> {
        self.layout = read_layout(&mut self.r).map_err(|e| self.layout_error(e))?;
        let np = count_buckets(&self.layout.positive_spans);
        let nn = count_buckets(&self.layout.negative_spans);
        // Each bucket takes a bit at least.
        let left = self.r.bit_len().saturating_sub(self.r.bit_pos()) as u64;
        if np.saturating_add(nn) > left {
            return Err(ChunkError::HistogramCountTooLarge {
                field: "buckets",
                count: np.saturating_add(nn),
                bits_left: left,
            });
        }
        let (np, nn) = (np as usize, nn as usize);
        // The vectors of the chunk before are reused.
        for (v, n) in [
            (&mut self.p_buckets, np),
            (&mut self.p_deltas, np),
            (&mut self.n_buckets, nn),
            (&mut self.n_deltas, nn),
        ] {
            v.clear();
            v.resize(n, 0);
        }
        for (v, n) in [(&mut self.p_floats, np), (&mut self.n_floats, nn)] {
            v.clear();
            v.resize(n, 0.0);
        }
        self.t = read_varbit_int(&mut self.r);
        self.cnt = read_varbit_uint(&mut self.r);
        self.z_cnt = read_varbit_uint(&mut self.r);
        self.sum.value = f64::from_bits(self.r.read_bits(64));
        // Each bucket of the first sample is one varbit (its spatial delta): read in bulk as
        // delta-of-deltas from zero, it leaves the buckets and the floats as they should be,
        // and deltas that start the next sample from zero once cleared.
        let negative = self.read_buckets();
        self.p_deltas.fill(0);
        self.n_deltas.fill(0);
        self.check()?;
        if negative {
            self.check_counts()?;
        }
        Ok(())
    }

    /// One sample's bucket delta-of-deltas, positive side then negative, applied to the
    /// buckets ([`read_bucket_dods`]); whether an absolute count went negative.
    fn read_buckets(&mut self) -> bool {
        let positive = read_bucket_dods(
            &mut self.r,
            &mut self.p_buckets,
            &mut self.p_deltas,
            &mut self.p_floats,
        );
        positive
            | read_bucket_dods(
                &mut self.r,
                &mut self.n_buckets,
                &mut self.n_deltas,
                &mut self.n_floats,
            )
    }

    /// Samples after the first: delta of delta of each field, the sum XOR-encoded.
    fn read_next(&mut self) -> Result<(), ChunkError> {
        let t_dod = read_varbit_int(&mut self.r);
        self.t_delta = self.t_delta.wrapping_add(t_dod);
        self.t = self.t.wrapping_add(self.t_delta);
        let cnt_dod = read_varbit_int(&mut self.r);
        self.cnt_delta = self.cnt_delta.wrapping_add(cnt_dod);
        self.cnt = (self.cnt as i64).wrapping_add(self.cnt_delta) as u64;
        let z_dod = read_varbit_int(&mut self.r);
        self.z_cnt_delta = self.z_cnt_delta.wrapping_add(z_dod);
        self.z_cnt = (self.z_cnt as i64).wrapping_add(self.z_cnt_delta) as u64;
        let at = self.r.bit_pos() as u64;
        if let Err((leading, significant)) = xor_read(&mut self.r, &mut self.sum) {
            self.check()?;
            return Err(ChunkError::InvalidValueHeader {
                sample: self.num_read,
                bit_offset: at,
                leading,
                significant,
            });
        }
        self.check()?;
        if super::is_stale_nan(self.sum.value) {
            return Ok(());
        }
        let negative = self.read_buckets();
        self.check()?;
        if negative {
            // Only to name the bucket: the pass above found one.
            return self.check_counts();
        }
        Ok(())
    }

    /// A bucket whose absolute count is negative cannot come from any writer.
    fn check_counts(&self) -> Result<(), ChunkError> {
        for (side, buckets) in [
            (Side::Positive, &self.p_buckets),
            (Side::Negative, &self.n_buckets),
        ] {
            let mut current = 0i64;
            for (i, &d) in buckets.iter().enumerate() {
                current = current.wrapping_add(d);
                if current < 0 {
                    return Err(ChunkError::InvalidHistogramSample {
                        sample: self.num_read,
                        source: HistogramError::NegativeBucketCount {
                            side,
                            bucket: i,
                            count: FloatValue(current as f64),
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// A layout error, its truncation reported as one of sample 0.
    fn layout_error(&self, e: ChunkError) -> ChunkError {
        match e {
            ChunkError::Truncated {
                bit_offset,
                bit_len,
                ..
            } => ChunkError::Truncated {
                sample: 0,
                num_samples: self.num_total,
                bit_offset,
                bit_len,
            },
            e => e,
        }
    }
}

/// Decodes a whole integer histogram payload into `(t, histogram)` pairs.
pub fn decode_histogram_chunk(data: &[u8]) -> Result<Vec<(i64, Histogram)>, ChunkError> {
    let mut it = HistogramIterator::new(data)?;
    // A sample takes 4 bits at least; the header's count is not trusted further.
    let mut out = Vec::with_capacity(it.num_samples().min(data.len() * 2));
    while let Some(s) = it.next()? {
        out.push(s);
    }
    Ok(out)
}
