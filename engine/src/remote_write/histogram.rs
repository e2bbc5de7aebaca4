//! The `Histogram` message of both protocol versions (1.0's fields 1-16, 2.0's adds 17), read
//! into the histogram model. Which model it becomes follows Prometheus's receivers: a
//! histogram whose count is `count_float` (field 2) is a float histogram, any other (field 1,
//! or no count at all) an integer one; the zero count is read from the field of the same
//! kind, as a generated decoder's `GetZeroCountInt`/`GetZeroCountFloat` read it, so a
//! mismatched one is 0. Validation is the caller's ([`HistogramSample::validate`]).

use crate::encoding::zigzag_decode;
use crate::histogram::{
    CounterResetHint, CustomBounds, FloatHistogram, Histogram, HistogramError, Span,
    is_custom_buckets_schema,
};

pub use crate::head::HistogramValue;

use super::batch::{make_room, take};
use super::wire::{Cursor, FIXED64, Fault, FaultKind, Field, Kind, LEN, VARINT, key};

/// A native histogram sample of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Timestamp, ms since the Unix epoch.
    pub t: i64,
    /// The histogram, integer or float as the sender sent it.
    pub h: HistogramValue,
}

impl HistogramSample {
    /// Checks the histogram as Prometheus checks one before storing it
    /// ([`Histogram::validate`], [`FloatHistogram::validate`]).
    pub fn validate(&self) -> Result<(), HistogramError> {
        match &self.h {
            HistogramValue::Int(h) => h.validate(),
            HistogramValue::Float(h) => h.validate(),
        }
    }

    /// Whether this is a stale marker (the sum is Prometheus's stale NaN).
    pub fn is_stale(&self) -> bool {
        match &self.h {
            HistogramValue::Int(h) => h.is_stale(),
            HistogramValue::Float(h) => h.is_stale(),
        }
    }
}

const BUCKET_SPAN: &[Field] = &[
    Field::new(1, "offset", Kind::Varint),
    Field::new(2, "length", Kind::Varint),
];

/// Which oneof member was read last.
#[derive(Clone, Copy, PartialEq)]
enum Count {
    None,
    Int(u64),
    Float(f64),
}

/// Reads one `Histogram` message; `fields` is the version's declaration (for wire-type errors
/// and unknown fields, which are skipped). Its spans and buckets are taken from `room`, the
/// bytes the request's entries may still take.
pub(super) fn histogram(
    mut c: Cursor<'_>,
    fields: &'static [Field],
    room: &mut usize,
) -> Result<HistogramSample, Fault> {
    let mut count = Count::None;
    let mut zero = Count::None;
    let mut t = 0i64;
    let mut schema = 0i32;
    let mut sum = 0.0;
    let mut zero_threshold = 0.0;
    let mut hint = 0u64;
    let (mut pos_spans, mut neg_spans) = (Vec::new(), Vec::new());
    let (mut pos_deltas, mut neg_deltas) = (Vec::new(), Vec::new());
    let (mut pos_counts, mut neg_counts) = (Vec::new(), Vec::new());
    let mut custom = Vec::new();
    while c.more() {
        let at = c.pos;
        let k = c.varint()?;
        let f = |name| move |e: Fault| e.at(name, None);
        match k {
            k if k == key(1, VARINT) => count = Count::Int(c.varint().map_err(f("count_int"))?),
            k if k == key(2, FIXED64) => {
                count = Count::Float(f64::from_bits(c.fixed64().map_err(f("count_float"))?))
            }
            k if k == key(3, FIXED64) => sum = f64::from_bits(c.fixed64().map_err(f("sum"))?),
            // sint32: the varint truncated to 32 bits, then zig-zag decoded.
            k if k == key(4, VARINT) => {
                schema = zigzag32(c.varint().map_err(f("schema"))?);
            }
            k if k == key(5, FIXED64) => {
                zero_threshold = f64::from_bits(c.fixed64().map_err(f("zero_threshold"))?)
            }
            k if k == key(6, VARINT) => zero = Count::Int(c.varint().map_err(f("zero_count_int"))?),
            k if k == key(7, FIXED64) => {
                zero = Count::Float(f64::from_bits(c.fixed64().map_err(f("zero_count_float"))?))
            }
            k if k == key(8, LEN) => {
                let i = neg_spans.len();
                let m = c.len_delim().map_err(|e| e.at("negative_spans", Some(i)))?;
                make_room(&mut neg_spans, 1, room, at)?;
                neg_spans.push(span(m).map_err(|e| e.at("negative_spans", Some(i)))?);
            }
            k if k == key(11, LEN) => {
                let i = pos_spans.len();
                let m = c.len_delim().map_err(|e| e.at("positive_spans", Some(i)))?;
                make_room(&mut pos_spans, 1, room, at)?;
                pos_spans.push(span(m).map_err(|e| e.at("positive_spans", Some(i)))?);
            }
            k if k == key(9, LEN) || k == key(9, VARINT) => {
                sint64s(&mut c, k, &mut neg_deltas, room).map_err(f("negative_deltas"))?
            }
            k if k == key(12, LEN) || k == key(12, VARINT) => {
                sint64s(&mut c, k, &mut pos_deltas, room).map_err(f("positive_deltas"))?
            }
            k if k == key(10, LEN) || k == key(10, FIXED64) => {
                doubles(&mut c, k, &mut neg_counts, room).map_err(f("negative_counts"))?
            }
            k if k == key(13, LEN) || k == key(13, FIXED64) => {
                doubles(&mut c, k, &mut pos_counts, room).map_err(f("positive_counts"))?
            }
            k if k == key(16, LEN) || k == key(16, FIXED64) => {
                doubles(&mut c, k, &mut custom, room).map_err(f("custom_values"))?
            }
            k if k == key(14, VARINT) => hint = c.varint().map_err(f("reset_hint"))?,
            k if k == key(15, VARINT) => t = c.varint().map_err(f("timestamp"))? as i64,
            // 2.0's start timestamp (unknown to 1.0, where skipping it is what a decoder does).
            k if k == key(17, VARINT) => {
                c.varint().map_err(f("start_timestamp"))?;
            }
            k => c.other(k, at, fields)?,
        }
    }
    // An enum is read as 32 bits; a number no version defines is "unknown".
    let hint = u8::try_from(hint as u32)
        .ok()
        .and_then(CounterResetHint::from_u8)
        .unwrap_or_default();
    // Custom bounds are kept only for the custom-buckets schema, as Prometheus keeps them.
    let custom_values: CustomBounds = if is_custom_buckets_schema(schema) {
        // The shared copy is a new allocation beside the vector it is made from.
        take(room, custom.len() * size_of::<f64>(), c.end)?;
        custom.into()
    } else {
        CustomBounds::default()
    };
    let h = match count {
        Count::Float(count) => HistogramValue::Float(FloatHistogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold,
            zero_count: match zero {
                Count::Float(z) => z,
                _ => 0.0,
            },
            count,
            sum,
            positive_spans: pos_spans,
            negative_spans: neg_spans,
            positive_buckets: pos_counts,
            negative_buckets: neg_counts,
            custom_values,
        }),
        Count::Int(_) | Count::None => HistogramValue::Int(Histogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold,
            zero_count: match zero {
                Count::Int(z) => z,
                _ => 0,
            },
            count: match count {
                Count::Int(n) => n,
                _ => 0,
            },
            sum,
            positive_spans: pos_spans,
            negative_spans: neg_spans,
            positive_buckets: pos_deltas,
            negative_buckets: neg_deltas,
            custom_values,
        }),
    };
    Ok(HistogramSample { t, h })
}

fn zigzag32(v: u64) -> i32 {
    let u = v as u32;
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

/// One `BucketSpan`: `offset` sint32, `length` uint32.
fn span(mut c: Cursor<'_>) -> Result<Span, Fault> {
    let mut s = Span::default();
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, VARINT) => {
                s.offset = zigzag32(c.varint().map_err(|e| e.at("offset", None))?)
            }
            k if k == key(2, VARINT) => {
                s.length = c.varint().map_err(|e| e.at("length", None))? as u32
            }
            k => c.other(k, at, BUCKET_SPAN)?,
        }
    }
    Ok(s)
}

/// A repeated sint64 field, packed (`k` is a LEN key) or one element, grown within `room`.
fn sint64s(c: &mut Cursor<'_>, k: u64, out: &mut Vec<i64>, room: &mut usize) -> Result<(), Fault> {
    if k & 7 == u64::from(VARINT) {
        make_room(out, 1, room, c.pos)?;
        out.push(zigzag_decode(c.varint()?));
        return Ok(());
    }
    let mut m = c.len_delim()?;
    // A packed run holds one element per byte under 0x80 (each varint's last): room for all
    // of them is made, or refused, before any is read.
    let n = m.buf[m.pos..m.end].iter().filter(|&&b| b < 0x80).count();
    make_room(out, n, room, m.pos)?;
    while m.more() {
        out.push(zigzag_decode(m.varint()?));
    }
    Ok(())
}

/// A repeated double field, packed (`k` is a LEN key) or one element, grown within `room`.
fn doubles(c: &mut Cursor<'_>, k: u64, out: &mut Vec<f64>, room: &mut usize) -> Result<(), Fault> {
    if k & 7 == u64::from(FIXED64) {
        make_room(out, 1, room, c.pos)?;
        out.push(f64::from_bits(c.fixed64()?));
        return Ok(());
    }
    let m = c.len_delim()?;
    let len = m.end - m.pos;
    if len % 8 != 0 {
        return Err(Fault::new(m.pos, FaultKind::PackedLen { len, width: 8 }));
    }
    make_room(out, len / 8, room, m.pos)?;
    out.extend(
        m.buf[m.pos..m.end]
            .chunks_exact(8)
            .map(|b| f64::from_bits(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))),
    );
    Ok(())
}
