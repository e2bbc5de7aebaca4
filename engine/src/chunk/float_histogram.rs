//! Float native histogram chunks (encoding 3), bit for bit as Prometheus 3 writes them
//! (`docs/formats/tsdb-block.md`, Float histogram chunk payload).
//!
//! The header and layout are those of integer histogram chunks. Sample 0 holds its timestamp
//! as a varbit and its count, zero count, sum and every bucket count as 64 raw bits; every
//! later sample holds the delta of delta of its timestamp as a varbit and each of the other
//! fields XOR-encoded against the same field of the sample before, each field with its own
//! leading/trailing state.

use std::borrow::Cow;

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};
use super::histogram::{Fit, HistogramAppend};
use super::histogram_layout::{
    CounterResetHeader, HEADER_BYTES, Layout, MAX_HISTOGRAM_SAMPLES, counter_reset_hint,
    new_writer, parse_header, read_count, read_header, read_layout, write_count, write_header,
    write_layout,
};
use super::histogram_recode::{
    Insert, adjust_for_inserts, expand_float_spans_and_buckets, expand_spans_both_ways, insert,
};
use super::varbit::{XorState, put_varbit_int, read_varbit_int, xor_read, xor_write};
use crate::histogram::{
    CounterResetHint, FloatHistogram, Span, count_buckets, custom_bounds_match,
    is_custom_buckets_schema,
};

/// Incremental encoder of a float histogram chunk, the counterpart of Prometheus's
/// `FloatHistogramAppender`.
#[derive(Debug, Clone)]
pub struct FloatHistogramAppender {
    w: BitWriter,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorState,
    z_cnt: XorState,
    sum: XorState,
    p_buckets: Vec<XorState>,
    n_buckets: Vec<XorState>,
}

impl Default for FloatHistogramAppender {
    fn default() -> Self {
        FloatHistogramAppender::new()
    }
}

impl FloatHistogramAppender {
    /// An appender for an empty chunk (header `Unknown`).
    pub fn new() -> Self {
        FloatHistogramAppender {
            w: new_writer(125),
            layout: Layout::default(),
            t: i64::MIN,
            t_delta: 0,
            cnt: XorState::UNSET,
            z_cnt: XorState::UNSET,
            sum: XorState::UNSET,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
        }
    }

    /// An appender that continues an existing payload, in the state it would have had if it had
    /// written every sample itself.
    pub fn from_payload(data: &[u8]) -> Result<Self, ChunkError> {
        let mut it = FloatHistogramIterator::new(data)?;
        let mut a = FloatHistogramAppender::new();
        let mut h = FloatHistogram::default();
        while let Some(t) = it.next_sample()? {
            it.float_histogram_into(&mut h);
            a.append_raw(t, &h)?;
        }
        a.set_counter_reset_header(it.counter_reset_header());
        Ok(a)
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> usize {
        usize::from(read_count(&self.w))
    }

    /// The payload so far.
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

    /// The header a new chunk starting with `h` right after this one gets.
    pub fn counter_reset_after(&self, h: &FloatHistogram) -> CounterResetHeader {
        self.fit(h).header
    }

    /// Appends `h` at `t` (ms) as Prometheus's head does; see
    /// [`HistogramAppender::append`](super::HistogramAppender::append). Unlike integer
    /// chunks, a new schema or zero threshold does not make the next chunk's header
    /// `Unknown`: it stays as a fresh chunk's, or `NotCounterReset` when worked out against
    /// `prev`.
    pub fn append(
        &mut self,
        prev: Option<&FloatHistogramAppender>,
        t: i64,
        h: &FloatHistogram,
    ) -> Result<HistogramAppend<FloatHistogramAppender>, ChunkError> {
        if !h.is_stale() {
            h.validate()
                .map_err(|source| ChunkError::InvalidHistogram { source })?;
        }
        self.append_valid(prev, t, h)
    }

    /// [`append`](Self::append) of a histogram already validated (or a stale marker).
    pub(crate) fn append_valid(
        &mut self,
        prev: Option<&FloatHistogramAppender>,
        t: i64,
        h: &FloatHistogram,
    ) -> Result<HistogramAppend<FloatHistogramAppender>, ChunkError> {
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
        let reset = fit.header == CounterResetHeader::CounterReset;
        if !fit.ok || (!gauge && reset) {
            let mut next = FloatHistogramAppender::new();
            if gauge {
                next.set_counter_reset_header(CounterResetHeader::Gauge);
            } else if reset {
                next.set_counter_reset_header(CounterResetHeader::CounterReset);
            }
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

    /// Whether counter histogram `h` fits after the chunk's last sample. The header is
    /// `CounterReset` for a reset and `NotCounterReset` otherwise, fitting or not.
    fn fit(&self, h: &FloatHistogram) -> Fit {
        let mut fit = Fit {
            header: CounterResetHeader::NotCounterReset,
            ..Fit::default()
        };
        let reset = |mut fit: Fit| {
            fit.header = CounterResetHeader::CounterReset;
            fit
        };
        if self.num_samples() > 0 && self.counter_reset_header() == CounterResetHeader::Gauge {
            return fit;
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            return reset(fit);
        }
        if h.is_stale() {
            fit.ok = true;
            return fit;
        }
        if super::is_stale_nan(self.sum.value) {
            return fit;
        }
        if h.count < self.cnt.value {
            return reset(fit);
        }
        if h.schema != self.layout.schema || h.zero_threshold != self.layout.zero_threshold {
            return fit;
        }
        if is_custom_buckets_schema(h.schema)
            && !custom_bounds_match(&h.custom_values, &self.layout.custom_values)
        {
            return reset(fit);
        }
        if h.zero_count < self.z_cnt.value {
            return reset(fit);
        }
        let p_counts: Vec<f64> = self.p_buckets.iter().map(|b| b.value).collect();
        let n_counts: Vec<f64> = self.n_buckets.iter().map(|b| b.value).collect();
        let Some((fp, bp)) = expand_float_spans_and_buckets(
            &self.layout.positive_spans,
            &h.positive_spans,
            &p_counts,
            &h.positive_buckets,
        ) else {
            return reset(fit);
        };
        let Some((fneg, bneg)) = expand_float_spans_and_buckets(
            &self.layout.negative_spans,
            &h.negative_spans,
            &n_counts,
            &h.negative_buckets,
        ) else {
            return reset(fit);
        };
        fit.ok = true;
        (fit.forward_pos, fit.backward_pos) = (fp, bp);
        (fit.forward_neg, fit.backward_neg) = (fneg, bneg);
        fit
    }

    /// Whether gauge histogram `h` fits.
    fn fit_gauge(&self, h: &FloatHistogram) -> Fit {
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

    /// Rewrites the chunk with a wider layout, keeping its counter-reset header.
    fn recode(
        &mut self,
        p_inserts: &[Insert],
        n_inserts: &[Insert],
        p_spans: &[Span],
        n_spans: &[Span],
    ) -> Result<(), ChunkError> {
        let old = std::mem::take(self);
        let mut it = FloatHistogramIterator::new(old.bytes())?;
        let mut h = FloatHistogram::default();
        while let Some(t) = it.next_sample()? {
            it.float_histogram_into(&mut h);
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

    /// Writes a sample that fits the chunk's layout (or starts it).
    fn append_raw(&mut self, t: i64, h: &FloatHistogram) -> Result<(), ChunkError> {
        let num = read_count(&self.w);
        if usize::from(num) >= MAX_HISTOGRAM_SAMPLES {
            return Err(ChunkError::TooManySamples {
                max: MAX_HISTOGRAM_SAMPLES,
            });
        }
        let stale;
        let h = if h.is_stale() {
            stale = FloatHistogram {
                sum: h.sum,
                ..FloatHistogram::default()
            };
            &stale
        } else {
            h
        };
        let mut t_delta = 0;
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
            let unset = |b: &[f64], n: usize| -> Vec<XorState> {
                (0..n)
                    .map(|i| XorState::unset(b.get(i).copied().unwrap_or(0.0)))
                    .collect()
            };
            self.p_buckets = unset(&h.positive_buckets, np);
            self.n_buckets = unset(&h.negative_buckets, nn);
            put_varbit_int(&mut self.w, t);
            self.w.write_bits(h.count.to_bits(), 64);
            self.w.write_bits(h.zero_count.to_bits(), 64);
            self.w.write_bits(h.sum.to_bits(), 64);
            self.cnt.value = h.count;
            self.z_cnt.value = h.zero_count;
            self.sum.value = h.sum;
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                self.w.write_bits(b.to_bits(), 64);
            }
        } else {
            t_delta = t.wrapping_sub(self.t);
            put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            xor_write(&mut self.w, &mut self.cnt, h.count);
            xor_write(&mut self.w, &mut self.z_cnt, h.zero_count);
            xor_write(&mut self.w, &mut self.sum, h.sum);
            for (st, &b) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
                xor_write(&mut self.w, st, b);
            }
            for (st, &b) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
                xor_write(&mut self.w, st, b);
            }
        }
        write_count(&mut self.w, num + 1);
        self.t = t;
        self.t_delta = t_delta;
        Ok(())
    }
}

/// Widens absolute `buckets` to the layout `spans` with the empty buckets `inserts` name.
fn widen_buckets(buckets: &mut Vec<f64>, spans: &[Span], inserts: &[Insert]) {
    if inserts.is_empty() {
        return;
    }
    let mut out = vec![0.0; count_buckets(spans) as usize];
    insert(buckets, &mut out, inserts, false);
    *buckets = out;
}

/// Sample iterator over a float histogram payload; the same guarantees as
/// [`HistogramIterator`](super::HistogramIterator).
#[derive(Debug, Clone)]
pub struct FloatHistogramIterator<'a> {
    r: BitReader<'a>,
    num_total: usize,
    num_read: usize,
    header: CounterResetHeader,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorState,
    z_cnt: XorState,
    sum: XorState,
    p_buckets: Vec<XorState>,
    n_buckets: Vec<XorState>,
    err: Option<ChunkError>,
}

impl<'a> FloatHistogramIterator<'a> {
    /// An iterator before the first sample of `data`; fails only if the 3-byte header is
    /// missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let (num_total, header) = parse_header(data)?;
        Ok(FloatHistogramIterator {
            r: BitReader::new(data, HEADER_BYTES * 8),
            num_total,
            num_read: 0,
            header,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            cnt: XorState::READER,
            z_cnt: XorState::READER,
            sum: XorState::READER,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
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

    /// Decodes the next sample as a new [`FloatHistogram`]; `Ok(None)` after the last.
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible, so it cannot be Iterator::next"
    )]
    pub fn next(&mut self) -> Result<Option<(i64, FloatHistogram)>, ChunkError> {
        let Some(t) = self.next_sample()? else {
            return Ok(None);
        };
        let mut h = FloatHistogram::default();
        self.float_histogram_into(&mut h);
        Ok(Some((t, h)))
    }

    /// Moves to the first sample at or after `t` (ms) and returns its timestamp; never moves
    /// back.
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

    /// The counter-reset hint of the current sample, as Prometheus reports it.
    pub fn hint(&self) -> CounterResetHint {
        counter_reset_hint(self.header, self.num_read.saturating_sub(1))
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
            self.z_cnt.value,
            self.cnt.value,
            self.sum.value,
        );
    }

    /// Writes the current sample into `out`, reusing its buffers. A stale marker comes out as
    /// [`FloatHistogram::stale_marker`].
    pub fn float_histogram_into(&self, out: &mut FloatHistogram) {
        if super::is_stale_nan(self.sum.value) {
            out.clone_from(&FloatHistogram::stale_marker());
            return;
        }
        out.counter_reset_hint = self.hint();
        out.schema = self.layout.schema;
        out.zero_threshold = self.layout.zero_threshold;
        out.zero_count = self.z_cnt.value;
        out.count = self.cnt.value;
        out.sum = self.sum.value;
        out.positive_spans.clone_from(&self.layout.positive_spans);
        out.negative_spans.clone_from(&self.layout.negative_spans);
        out.positive_buckets.clear();
        out.positive_buckets
            .extend(self.p_buckets.iter().map(|b| b.value));
        out.negative_buckets.clear();
        out.negative_buckets
            .extend(self.n_buckets.iter().map(|b| b.value));
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

    fn read_first(&mut self) -> Result<(), ChunkError> {
        self.layout = read_layout(&mut self.r).map_err(|e| match e {
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
        })?;
        let np = count_buckets(&self.layout.positive_spans);
        let nn = count_buckets(&self.layout.negative_spans);
        // Each bucket takes 64 bits in the first sample.
        let left = self.r.bit_len().saturating_sub(self.r.bit_pos()) as u64;
        if np.saturating_add(nn) > left / 64 {
            return Err(ChunkError::HistogramCountTooLarge {
                field: "buckets",
                count: np.saturating_add(nn),
                bits_left: left,
            });
        }
        self.t = read_varbit_int(&mut self.r);
        self.cnt.value = f64::from_bits(self.r.read_bits(64));
        self.z_cnt.value = f64::from_bits(self.r.read_bits(64));
        self.sum.value = f64::from_bits(self.r.read_bits(64));
        let r = &mut self.r;
        let mut read = |n: u64| -> Vec<XorState> {
            (0..n)
                .map(|_| XorState {
                    value: f64::from_bits(r.read_bits(64)),
                    ..XorState::READER
                })
                .collect()
        };
        self.p_buckets = read(np);
        self.n_buckets = read(nn);
        self.check()
    }

    fn read_next(&mut self) -> Result<(), ChunkError> {
        let t_dod = read_varbit_int(&mut self.r);
        self.t_delta = self.t_delta.wrapping_add(t_dod);
        self.t = self.t.wrapping_add(self.t_delta);
        let res = self.read_fields();
        // Reading past the end is reported as such, whatever it made of the bits.
        self.check()?;
        res
    }

    /// The XOR-encoded fields of a sample after the first.
    fn read_fields(&mut self) -> Result<(), ChunkError> {
        let sample = self.num_read;
        let r = &mut self.r;
        read_xor_field(r, &mut self.cnt, sample)?;
        read_xor_field(r, &mut self.z_cnt, sample)?;
        read_xor_field(r, &mut self.sum, sample)?;
        if super::is_stale_nan(self.sum.value) {
            return Ok(());
        }
        for st in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
            read_xor_field(r, st, sample)?;
        }
        Ok(())
    }
}

/// Reads one XOR-encoded field of sample `sample`.
fn read_xor_field(
    r: &mut BitReader<'_>,
    st: &mut XorState,
    sample: usize,
) -> Result<(), ChunkError> {
    let at = r.bit_pos() as u64;
    xor_read(r, st).map_err(|(leading, significant)| ChunkError::InvalidValueHeader {
        sample,
        bit_offset: at,
        leading,
        significant,
    })
}

/// Decodes a whole float histogram payload into `(t, histogram)` pairs.
pub fn decode_float_histogram_chunk(data: &[u8]) -> Result<Vec<(i64, FloatHistogram)>, ChunkError> {
    let mut it = FloatHistogramIterator::new(data)?;
    // A sample takes 4 bits at least; the header's count is not trusted further.
    let mut out = Vec::with_capacity(it.num_samples().min(data.len() * 2));
    while let Some(s) = it.next()? {
        out.push(s);
    }
    Ok(out)
}
