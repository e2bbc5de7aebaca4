//! What integer and float histogram chunks share (`docs/formats/tsdb-block.md`, Histogram chunk
//! payload): the 3-byte header with its counter-reset bits, and the layout the first sample
//! writes (zero threshold, schema, spans, custom bounds).

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};
use super::varbit::{put_varbit_int, put_varbit_uint, read_varbit_int, read_varbit_uint};
use crate::histogram::{
    CounterResetHint, CustomBounds, FloatHistogram, HistogramError, Side, Span,
    is_custom_buckets_schema, is_known_schema,
};

/// Bytes before the bit stream: the big-endian u16 sample count and the flags byte.
pub(crate) const HEADER_BYTES: usize = 3;

/// Position of the flags byte, whose top two bits are the counter-reset header.
const FLAGS_BYTE: usize = 2;

/// Mask of the counter-reset bits in the flags byte.
const COUNTER_RESET_MASK: u8 = 0b1100_0000;

/// Most samples one histogram chunk holds: the count field is a u16.
pub const MAX_HISTOGRAM_SAMPLES: usize = u16::MAX as usize;

/// The top two bits of a histogram chunk's flags byte: why the chunk was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum CounterResetHeader {
    /// Unknown whether a counter reset started the chunk (`00`).
    #[default]
    Unknown = 0b0000_0000,
    /// A counter reset started the chunk (`10`).
    CounterReset = 0b1000_0000,
    /// The chunk continues the previous one without a reset (`01`).
    NotCounterReset = 0b0100_0000,
    /// The chunk holds gauge histograms (`11`).
    Gauge = 0b1100_0000,
}

impl CounterResetHeader {
    /// The header in a flags byte (its other bits are ignored).
    pub fn from_flags(flags: u8) -> Self {
        match flags & COUNTER_RESET_MASK {
            0b1000_0000 => CounterResetHeader::CounterReset,
            0b0100_0000 => CounterResetHeader::NotCounterReset,
            0b1100_0000 => CounterResetHeader::Gauge,
            _ => CounterResetHeader::Unknown,
        }
    }

    /// The header a sample's hint asks for when it starts a chunk.
    pub fn from_hint(hint: CounterResetHint) -> Self {
        match hint {
            CounterResetHint::CounterReset => CounterResetHeader::CounterReset,
            CounterResetHint::NotCounterReset => CounterResetHeader::NotCounterReset,
            CounterResetHint::Gauge => CounterResetHeader::Gauge,
            CounterResetHint::Unknown => CounterResetHeader::Unknown,
        }
    }
}

/// The hint a reader reports for the sample at `position` (0-based) of a chunk with `header`,
/// as Prometheus 3 reports it: gauge chunks give [`CounterResetHint::Gauge`]; later samples of
/// other chunks [`CounterResetHint::NotCounterReset`]; the first sample
/// [`CounterResetHint::Unknown`] whatever the header says, since the chunk before it may be
/// gone or out of order by the time the chunk is read.
pub fn counter_reset_hint(header: CounterResetHeader, position: usize) -> CounterResetHint {
    match header {
        CounterResetHeader::Gauge => CounterResetHint::Gauge,
        _ if position > 0 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// A fresh payload: count 0, flags 0, room for `bytes` more; written as Prometheus 3 writes,
/// without the empty trailing byte older writers left.
pub(crate) fn new_writer(bytes: usize) -> BitWriter {
    let mut prefix = Vec::with_capacity(HEADER_BYTES + bytes);
    prefix.extend_from_slice(&[0; HEADER_BYTES]);
    BitWriter::with_prefix_packed(prefix)
}

/// The sample count in a payload's header.
pub(crate) fn read_count(w: &BitWriter) -> u16 {
    match w.bytes() {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// Stores the sample count in a payload's header.
pub(crate) fn write_count(w: &mut BitWriter, n: u16) {
    if let Some(h) = w.bytes_mut().get_mut(..2) {
        h.copy_from_slice(&n.to_be_bytes());
    }
}

/// The counter-reset header of a payload being written.
pub(crate) fn read_header(w: &BitWriter) -> CounterResetHeader {
    CounterResetHeader::from_flags(w.bytes().get(FLAGS_BYTE).copied().unwrap_or(0))
}

/// Sets the counter-reset bits of a payload being written, keeping its other flag bits.
pub(crate) fn write_header(w: &mut BitWriter, h: CounterResetHeader) {
    if let Some(b) = w.bytes_mut().get_mut(FLAGS_BYTE) {
        *b = (*b & !COUNTER_RESET_MASK) | h as u8;
    }
}

/// The sample count and counter-reset header of a payload, or why there are none.
pub(crate) fn parse_header(data: &[u8]) -> Result<(usize, CounterResetHeader), ChunkError> {
    match data {
        [a, b, flags, ..] => Ok((
            usize::from(u16::from_be_bytes([*a, *b])),
            CounterResetHeader::from_flags(*flags),
        )),
        _ => Err(ChunkError::MissingHistogramHeader { len: data.len() }),
    }
}

/// The layout every sample of a chunk shares, written once before the first sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Layout {
    pub schema: i32,
    pub zero_threshold: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub custom_values: CustomBounds,
}

impl Layout {
    /// Writes a sample of this layout into `out` without its buckets: count, sum, zero bucket,
    /// schema, custom bounds and `hint`, spans and buckets left empty (their allocations
    /// kept); a stale marker (`sum` the stale NaN) as [`FloatHistogram::stale_marker`]. For
    /// readers that need the count and sum only.
    pub(crate) fn stats_into(
        &self,
        out: &mut FloatHistogram,
        hint: CounterResetHint,
        zero_count: f64,
        count: f64,
        sum: f64,
    ) {
        if super::is_stale_nan(sum) {
            out.clone_from(&FloatHistogram::stale_marker());
            return;
        }
        out.positive_spans.clear();
        out.negative_spans.clear();
        out.positive_buckets.clear();
        out.negative_buckets.clear();
        out.counter_reset_hint = hint;
        out.schema = self.schema;
        out.zero_threshold = self.zero_threshold;
        out.zero_count = zero_count;
        out.count = count;
        out.sum = sum;
        out.custom_values = self.custom_values.clone();
    }
}

/// Writes the layout: zero threshold, varbit schema, positive spans, negative spans, and the
/// custom bounds for schema -53.
pub(crate) fn write_layout(
    w: &mut BitWriter,
    schema: i32,
    zero_threshold: f64,
    positive_spans: &[Span],
    negative_spans: &[Span],
    custom_values: &[f64],
) {
    put_zero_threshold(w, zero_threshold);
    put_varbit_int(w, i64::from(schema));
    put_spans(w, positive_spans);
    put_spans(w, negative_spans);
    if is_custom_buckets_schema(schema) {
        put_varbit_uint(w, custom_values.len() as u64);
        for &b in custom_values {
            put_custom_bound(w, b);
        }
    }
}

fn put_spans(w: &mut BitWriter, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

/// Reads and checks a layout. Counts read from the payload are bounded by the bits left
/// before anything is allocated for them, and the layout must be one a writer could have
/// written: a known schema, spans a stored histogram could have.
pub(crate) fn read_layout(r: &mut BitReader<'_>) -> Result<Layout, ChunkError> {
    let zero_threshold = read_zero_threshold(r);
    let schema_raw = read_varbit_int(r);
    check_overrun(r)?;
    let schema = i32::try_from(schema_raw)
        .ok()
        .filter(|s| is_known_schema(*s))
        .ok_or(ChunkError::UnknownHistogramSchema { schema: schema_raw })?;
    let positive_spans = read_spans(r, "positive spans")?;
    let negative_spans = read_spans(r, "negative spans")?;
    let mut custom_values = CustomBounds::default();
    if is_custom_buckets_schema(schema) {
        let n = read_varbit_uint(r);
        check_overrun(r)?;
        // A bound takes 5 bits at least (a varbit of 1 or more).
        let n = bounded(r, n, 5, "custom bounds")?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(read_custom_bound(r));
            check_overrun(r)?;
        }
        custom_values = v.into();
    }
    let layout = Layout {
        schema,
        zero_threshold,
        positive_spans,
        negative_spans,
        custom_values,
    };
    check_layout(&layout).map_err(|source| ChunkError::InvalidHistogramLayout { source })?;
    Ok(layout)
}

fn read_spans(r: &mut BitReader<'_>, what: &'static str) -> Result<Vec<Span>, ChunkError> {
    let n = read_varbit_uint(r);
    check_overrun(r)?;
    // A span takes 2 bits at least (two zero varbits).
    let n = bounded(r, n, 2, what)?;
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        let length = read_varbit_uint(r);
        let offset = read_varbit_int(r);
        check_overrun(r)?;
        let (Ok(length), Ok(offset)) = (u32::try_from(length), i32::try_from(offset)) else {
            return Err(ChunkError::HistogramSpanOutOfRange {
                field: what,
                length,
                offset,
                bit_offset: r.bit_pos() as u64,
            });
        };
        spans.push(Span { offset, length });
    }
    Ok(spans)
}

/// `n` as a count of items of at least `min_bits` bits each, if the rest of the payload can
/// hold that many.
fn bounded(
    r: &BitReader<'_>,
    n: u64,
    min_bits: u64,
    what: &'static str,
) -> Result<usize, ChunkError> {
    let left = r.bit_len().saturating_sub(r.bit_pos()) as u64;
    if n > left / min_bits {
        return Err(ChunkError::HistogramCountTooLarge {
            field: what,
            count: n,
            bits_left: left,
        });
    }
    Ok(n as usize)
}

/// The checks a stored layout passes. Spans after the first may have negative offsets:
/// Prometheus 3.5 writes such layouts when a sample drops empty buckets and brings new ones at
/// once (the dropped buckets land at wrong indices; prometheus/prometheus PR #16893 fixes it),
/// and its reader decodes them bucket by bucket, so Gauntlet's does too. Custom-bucket layouts must still give every bucket
/// a bound.
fn check_layout(l: &Layout) -> Result<(), HistogramError> {
    if !is_custom_buckets_schema(l.schema) {
        return Ok(());
    }
    crate::histogram::validate::check_bounds(&l.custom_values)?;
    if l.zero_threshold != 0.0 {
        return Err(HistogramError::CustomBucketsZeroThreshold(
            crate::histogram::FloatValue(l.zero_threshold),
        ));
    }
    if !l.negative_spans.is_empty() {
        return Err(HistogramError::CustomBucketsNegativeBuckets);
    }
    // Bucket indices must stay within 0..=bounds (the last bucket is the +Inf one).
    let mut idx: i64 = -1;
    let mut reach: i64 = 0;
    for (n, s) in l.positive_spans.iter().enumerate() {
        idx += i64::from(s.offset);
        if s.length > 0 {
            if idx + 1 < 0 {
                return Err(HistogramError::SpanNegativeOffset {
                    side: Side::Positive,
                    span: n,
                    offset: s.offset,
                });
            }
            idx += i64::from(s.length);
            reach = reach.max(idx + 1);
        }
    }
    if reach > l.custom_values.len() as i64 + 1 {
        return Err(HistogramError::CustomBoundsTooFew {
            bounds: l.custom_values.len(),
            reach: reach as u64,
        });
    }
    Ok(())
}

/// A truncation error (of sample 0) if a read went past the end of the payload.
#[inline]
pub(crate) fn check_overrun(r: &BitReader<'_>) -> Result<(), ChunkError> {
    if r.overrun() {
        // The caller fills in the sample count.
        return Err(ChunkError::Truncated {
            sample: 0,
            num_samples: 0,
            bit_offset: r.bit_pos() as u64,
            bit_len: r.bit_len() as u64,
        });
    }
    Ok(())
}

/// Writes a zero threshold: one byte for 0 (`0`) or a power of two from 2^-243 to 2^10 (its
/// exponent plus 243, so 2^-128 is byte 116), otherwise byte 255 and the 64 bits of the float.
pub(crate) fn put_zero_threshold(w: &mut BitWriter, threshold: f64) {
    if threshold == 0.0 {
        w.write_byte(0);
        return;
    }
    match power_of_two_byte(threshold) {
        Some(b) => w.write_byte(b),
        None => {
            w.write_byte(255);
            w.write_bits(threshold.to_bits(), 64);
        }
    }
}

/// The one-byte form of `threshold`, when it is 2^k for -243 <= k <= 10.
fn power_of_two_byte(threshold: f64) -> Option<u8> {
    let bits = threshold.to_bits();
    let biased = (bits >> 52) as i64; // Sign bit included: negative numbers fall out below.
    if threshold <= 0.0 || !threshold.is_finite() || bits & ((1 << 52) - 1) != 0 || biased == 0 {
        return None;
    }
    // threshold = 2^(biased - 1023) = 0.5 * 2^(biased - 1022).
    let exp = biased - 1022;
    (-242..=11).contains(&exp).then(|| (exp + 243) as u8)
}

/// Reads a zero threshold written by [`put_zero_threshold`].
pub(crate) fn read_zero_threshold(r: &mut BitReader<'_>) -> f64 {
    match r.read_bits(8) as u8 {
        0 => 0.0,
        255 => f64::from_bits(r.read_bits(64)),
        // 0.5 * 2^(b - 243), always a normal float.
        b => f64::from_bits(((i64::from(b) - 244 + 1023) as u64) << 52),
    }
}

/// Writes a custom bound: a multiple of 0.001 from 0 to 33554.430 as the unsigned varbit of
/// `bound * 1000 + 1`, anything else as a `0` bit and the 64 bits of the float.
pub(crate) fn put_custom_bound(w: &mut BitWriter, bound: f64) {
    let scaled = bound * 1000.0;
    if !(0.0..=33_554_430.0).contains(&scaled) || !whole_when_scaled(bound) {
        w.write_bit(false);
        w.write_bits(bound.to_bits(), 64);
        return;
    }
    put_varbit_uint(w, scaled.round() as u64 + 1);
}

/// Whether `v * 1000` rounds to a whole number that gives back exactly `v`.
fn whole_when_scaled(v: f64) -> bool {
    let i = (v * 1000.0).round() as u64;
    i as f64 / 1000.0 == v
}

/// Reads a custom bound written by [`put_custom_bound`].
pub(crate) fn read_custom_bound(r: &mut BitReader<'_>) -> f64 {
    match read_varbit_uint(r) {
        0 => f64::from_bits(r.read_bits(64)),
        v => (v - 1) as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero_threshold_bytes(t: f64) -> Vec<u8> {
        let mut w = BitWriter::new();
        put_zero_threshold(&mut w, t);
        w.into_bytes()
    }

    #[test]
    fn zero_threshold_one_byte_forms() {
        // The default threshold, 2^-128, is byte 116.
        assert_eq!(zero_threshold_bytes(2f64.powi(-128))[0], 116);
        assert_eq!(zero_threshold_bytes(0.0)[0], 0);
        assert_eq!(zero_threshold_bytes(2f64.powi(-243))[0], 1);
        assert_eq!(zero_threshold_bytes(1024.0)[0], 254);
        assert_eq!(zero_threshold_bytes(1.0)[0], 244);
        for t in [
            2048.0,
            2f64.powi(-244),
            0.001,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            3.0,
        ] {
            let mut w = BitWriter::new();
            put_zero_threshold(&mut w, t);
            assert_eq!(w.bit_len(), 72, "{t}");
            assert_eq!(w.bytes()[0], 255, "{t}");
        }
        for t in [
            0.0,
            2f64.powi(-128),
            2f64.powi(-243),
            1024.0,
            0.001,
            -1.0,
            2048.0,
            1e-300,
        ] {
            let b = zero_threshold_bytes(t);
            let mut r = BitReader::new(&b, 0);
            assert_eq!(read_zero_threshold(&mut r).to_bits(), t.to_bits(), "{t}");
        }
    }

    #[test]
    fn custom_bounds_round_trip_with_their_short_form() {
        for (b, bits) in [
            (0.0, 5),
            (0.001, 5),
            (0.1, 13),
            (1.0, 17),
            (33_554.43, 32),
            (33_554.431, 65),
            (-0.5, 65),
            (0.0001, 65),
            (1e300, 65),
            (0.3, 13),
        ] {
            let mut w = BitWriter::new();
            put_custom_bound(&mut w, b);
            assert_eq!(w.bit_len(), bits, "{b}");
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes, 0);
            assert_eq!(read_custom_bound(&mut r), b, "{b}");
        }
    }

    #[test]
    fn first_sample_hint_is_unknown_unless_gauge() {
        use CounterResetHeader as H;
        for h in [H::Unknown, H::CounterReset, H::NotCounterReset] {
            assert_eq!(counter_reset_hint(h, 0), CounterResetHint::Unknown);
            assert_eq!(counter_reset_hint(h, 1), CounterResetHint::NotCounterReset);
        }
        assert_eq!(counter_reset_hint(H::Gauge, 0), CounterResetHint::Gauge);
        assert_eq!(counter_reset_hint(H::Gauge, 7), CounterResetHint::Gauge);
        for b in 0..=255u8 {
            assert_eq!(CounterResetHeader::from_flags(b) as u8, b & 0xC0);
        }
    }
}
