//! Remote write 1.0: `prometheus.WriteRequest` (`proto/proto/prometheus/prompb/`).

use crate::encoding::read_uvarint;

use super::batch::{
    DecodeLimits, ExemplarSample, FamilyMetadata, MetricType, Sample, SeriesEntry, WriteBatch,
    make_room,
};
use super::histogram::histogram;
use super::wire::{Cursor, FIXED64, Fault, FaultKind, Field, Kind, LEN, VARINT, check, key, strs};

const LABEL: &[Field] = &[
    Field::new(1, "name", Kind::Str),
    Field::new(2, "value", Kind::Str),
];
const SAMPLE: &[Field] = &[
    Field::new(1, "value", Kind::Fixed64),
    Field::new(2, "timestamp", Kind::Varint),
];
const EXEMPLAR: &[Field] = &[
    Field::new(1, "labels", Kind::Msg(LABEL)),
    Field::new(2, "value", Kind::Fixed64),
    Field::new(3, "timestamp", Kind::Varint),
];
const BUCKET_SPAN: &[Field] = &[
    Field::new(1, "offset", Kind::Varint),
    Field::new(2, "length", Kind::Varint),
];
/// `prometheus.Histogram`; 2.0's adds field 17 ([`super::v2`]).
pub(super) const HISTOGRAM_FIELDS: [Field; 16] = [
    Field::new(1, "count_int", Kind::Varint),
    Field::new(2, "count_float", Kind::Fixed64),
    Field::new(3, "sum", Kind::Fixed64),
    Field::new(4, "schema", Kind::Varint),
    Field::new(5, "zero_threshold", Kind::Fixed64),
    Field::new(6, "zero_count_int", Kind::Varint),
    Field::new(7, "zero_count_float", Kind::Fixed64),
    Field::new(8, "negative_spans", Kind::Msg(BUCKET_SPAN)),
    Field::new(9, "negative_deltas", Kind::PackedVarint),
    Field::new(10, "negative_counts", Kind::PackedFixed64),
    Field::new(11, "positive_spans", Kind::Msg(BUCKET_SPAN)),
    Field::new(12, "positive_deltas", Kind::PackedVarint),
    Field::new(13, "positive_counts", Kind::PackedFixed64),
    Field::new(14, "reset_hint", Kind::Varint),
    Field::new(15, "timestamp", Kind::Varint),
    Field::new(16, "custom_values", Kind::PackedFixed64),
];
const HISTOGRAM: &[Field] = &HISTOGRAM_FIELDS;
const TIME_SERIES: &[Field] = &[
    Field::new(1, "labels", Kind::Msg(LABEL)),
    Field::new(2, "samples", Kind::Msg(SAMPLE)),
    Field::new(3, "exemplars", Kind::Msg(EXEMPLAR)),
    Field::new(4, "histograms", Kind::Msg(HISTOGRAM)),
];
const METRIC_METADATA: &[Field] = &[
    Field::new(1, "type", Kind::Varint),
    Field::new(2, "metric_family_name", Kind::Str),
    Field::new(4, "help", Kind::Str),
    Field::new(5, "unit", Kind::Str),
];
const WRITE_REQUEST: &[Field] = &[
    Field::new(1, "timeseries", Kind::Msg(TIME_SERIES)),
    Field::new(3, "metadata", Kind::Msg(METRIC_METADATA)),
];

/// Decodes a whole `WriteRequest` into `out` (already cleared, its room set) under `limits`.
pub(super) fn request<'a>(
    buf: &'a [u8],
    limits: &DecodeLimits,
    out: &mut WriteBatch<'a>,
) -> Result<(), Fault> {
    let mut c = Cursor::new(buf);
    let mut metadata = 0;
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, LEN) => {
                let i = out.series.len();
                let m = c.len_delim().map_err(|e| e.at("timeseries", Some(i)))?;
                series(m, out).map_err(|e| e.at("timeseries", Some(i)))?;
                over_limits(out, limits, at)?;
            }
            k if k == key(3, LEN) => {
                let m = c
                    .len_delim()
                    .map_err(|e| e.at("metadata", Some(metadata)))?;
                family_metadata(m, out).map_err(|e| e.at("metadata", Some(metadata)))?;
                metadata += 1;
            }
            k => c.other(k, at, WRITE_REQUEST)?,
        }
    }
    Ok(())
}

/// Fails when the series or samples decoded so far pass `limits` (checked after each series).
#[inline]
pub(super) fn over_limits(
    out: &WriteBatch<'_>,
    limits: &DecodeLimits,
    at: usize,
) -> Result<(), Fault> {
    let over = |n: usize, limit: usize| limit > 0 && n > limit;
    if over(out.series.len(), limits.series) {
        return Err(Fault::new(
            at,
            FaultKind::TooMany {
                what: "series",
                limit: limits.series,
            },
        ));
    }
    if over(out.samples.len(), limits.samples) {
        return Err(Fault::new(
            at,
            FaultKind::TooMany {
                what: "samples",
                limit: limits.samples,
            },
        ));
    }
    Ok(())
}

/// One `TimeSeries`. The labels senders put first are read by [`label_run`]; any others
/// are gathered as byte spans and turned into strings at the end, with one UTF-8 pass over
/// all of them.
fn series<'a>(mut c: Cursor<'a>, out: &mut WriteBatch<'a>) -> Result<(), Fault> {
    let first_label = out.labels.len() as u32;
    let first_sample = out.samples.len() as u32;
    let first_histogram = out.histogram_samples.len() as u32;
    let first_exemplar = out.exemplar_samples.len() as u32;
    match label_run(
        c.buf,
        c.pos,
        c.end,
        &mut out.spans,
        &mut out.labels,
        &mut out.room,
    ) {
        Some(p) => c.pos = p,
        None => out.labels.truncate(first_label as usize),
    }
    let fast = out.labels.len() - first_label as usize;
    out.spans.clear();
    let (mut exemplars, mut histograms) = (0u32, 0u32);
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, LEN) => {
                if let Some([ns, ne, vs, ve, len]) = short_label(&c.buf[c.pos..c.end]) {
                    make_room(&mut out.spans, 2, &mut out.room, at)?;
                    let base = c.pos as u32;
                    out.spans.push((base + ns, base + ne));
                    out.spans.push((base + vs, base + ve));
                    c.pos += len as usize;
                    continue;
                }
                let i = fast + out.spans.len() / 2;
                let m = c.len_delim().map_err(|e| e.at("labels", Some(i)))?;
                make_room(&mut out.spans, 2, &mut out.room, at)?;
                label(m, &mut out.spans).map_err(|e| e.at("labels", Some(i)))?;
            }
            k if k == key(2, LEN) => {
                make_room(&mut out.samples, 1, &mut out.room, at)?;
                if let Some((s, len)) = short_sample(&c.buf[c.pos..], c.end - c.pos) {
                    out.samples.push(s);
                    c.pos += len;
                    continue;
                }
                let i = out.samples.len() - first_sample as usize;
                let m = c.len_delim().map_err(|e| e.at("samples", Some(i)))?;
                out.samples
                    .push(sample(m).map_err(|e| e.at("samples", Some(i)))?);
            }
            k if k == key(3, LEN) => {
                let i = exemplars as usize;
                let m = c.len_delim().map_err(|e| e.at("exemplars", Some(i)))?;
                exemplar(m, out, at).map_err(|e| e.at("exemplars", Some(i)))?;
                exemplars += 1;
            }
            k if k == key(4, LEN) => {
                let i = histograms as usize;
                let m = c.len_delim().map_err(|e| e.at("histograms", Some(i)))?;
                let h = histogram(m, HISTOGRAM, &mut out.room)
                    .map_err(|e| e.at("histograms", Some(i)))?;
                make_room(&mut out.histogram_samples, 1, &mut out.room, at)?;
                out.histogram_samples.push(h);
                histograms += 1;
            }
            k => c.other(k, at, TIME_SERIES)?,
        }
    }
    if !out.spans.is_empty() {
        make_room(&mut out.labels, out.spans.len() / 2, &mut out.room, c.pos)?;
        let labels = &mut out.labels;
        let mut name: Option<&'a str> = None;
        strs(c.buf, &out.spans, |s| match name.take() {
            None => name = Some(s),
            Some(n) => labels.push((n, s)),
        })
        .map_err(|i| {
            let field = if i % 2 == 0 { "name" } else { "value" };
            Fault::new(out.spans[i].0 as usize, FaultKind::Utf8)
                .at(field, None)
                .at("labels", Some(fast + i / 2))
        })?;
    }
    make_room(&mut out.series, 1, &mut out.room, c.pos)?;
    out.series.push(SeriesEntry {
        labels: first_label..out.labels.len() as u32,
        samples: first_sample..out.samples.len() as u32,
        histograms,
        histogram_samples: first_histogram..out.histogram_samples.len() as u32,
        exemplars,
        exemplar_samples: first_exemplar..out.exemplar_samples.len() as u32,
        ..SeriesEntry::default()
    });
    out.histograms += histograms as usize;
    out.exemplars += exemplars as usize;
    Ok(())
}

/// Reads the run of labels at `start` (before `end`) when they have [`short_label`]'s
/// shape, as senders write every series: the run's bytes, framing included, are one UTF-8
/// check, then each name and value is sliced from it. Returns where the run ends (`start`
/// when there is none); `None` when something in it needs the general path (or the vectors
/// have no `room` to grow), after which the caller drops the labels this pushed.
#[inline]
fn label_run<'a>(
    buf: &'a [u8],
    start: usize,
    end: usize,
    spans: &mut Vec<(u32, u32)>,
    labels: &mut Vec<(&'a str, &'a str)>,
    room: &mut usize,
) -> Option<usize> {
    let b = &buf[..end];
    let mut p = start;
    spans.clear();
    while b.get(p) == Some(&0x0a) {
        let [ns, ne, vs, ve, len] = short_label(&b[p + 1..])?;
        make_room(spans, 2, room, p).ok()?;
        let at = (p + 1) as u32;
        spans.push((at + ns, at + ne));
        spans.push((at + vs, at + ve));
        p += 1 + len as usize;
    }
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Some(p);
    };
    let lo = first.0 as usize;
    let run = std::str::from_utf8(&b[lo..last.1 as usize]).ok()?;
    make_room(labels, spans.len() / 2, room, start).ok()?;
    for pair in spans.chunks_exact(2) {
        let name = run.get(pair[0].0 as usize - lo..pair[0].1 as usize - lo)?;
        let value = run.get(pair[1].0 as usize - lo..pair[1].1 as usize - lo)?;
        labels.push((name, value));
    }
    Some(p)
}

/// The length-prefixed `Label` at the start of `b` when it has the shape every sender
/// writes: name then value, each once, every length under 128. Returns the spans of the
/// name and value and the bytes taken, relative to `b`; `None` sends anything else to
/// [`label`], which reads it to the same result.
#[inline(always)]
fn short_label(b: &[u8]) -> Option<[u32; 5]> {
    // len, 0x0a, n, name (n bytes), 0x12, k, value (k bytes), with len = 4 + n + k.
    let &[len, 0x0a, n, ..] = b else {
        return None;
    };
    if (len | n) >= 0x80 {
        return None;
    }
    let (len, n) = (usize::from(len), usize::from(n));
    let &[0x12, k] = b.get(3 + n..5 + n)? else {
        return None;
    };
    if k >= 0x80 || 4 + n + usize::from(k) != len || b.len() <= len {
        return None;
    }
    Some([
        3,
        3 + n as u32,
        5 + n as u32,
        1 + len as u32,
        1 + len as u32,
    ])
}

/// The length-prefixed `Sample` at the start of `b` when it is value then timestamp with a
/// length under 128, as every sender writes it, and fits in `left` bytes; with the bytes
/// taken. `b` may run past the enclosing message so the timestamp varint is read with one
/// load; the varint must still end inside the sample.
#[inline(always)]
fn short_sample(b: &[u8], left: usize) -> Option<(Sample, usize)> {
    let (&[len, 0x09], rest) = b.split_first_chunk::<2>()? else {
        return None;
    };
    let len = usize::from(len);
    let (v, rest) = rest.split_first_chunk::<8>()?;
    let (&0x10, rest) = rest.split_first()? else {
        return None;
    };
    let (t, n) = read_uvarint(rest).ok()?;
    if len >= 0x80 || 10 + n != len || 1 + len > left {
        return None;
    }
    let s = Sample {
        t: t as i64,
        v: f64::from_bits(u64::from_le_bytes(*v)),
    };
    Some((s, 1 + len))
}

/// One `Label`: appends the spans of its name and value to `spans`. A field given twice is
/// read as protobuf says (the last wins), but each copy must be UTF-8, as a full decoder
/// checks every copy it reads.
fn label(mut c: Cursor<'_>, spans: &mut Vec<(u32, u32)>) -> Result<(), Fault> {
    // A missing field is "": an empty span where the message starts (name) or ends (value),
    // which keeps spans in increasing order for the UTF-8 pass.
    let (start, end) = (c.pos as u32, c.end as u32);
    let mut name: Option<(u32, u32)> = None;
    let mut value: Option<(u32, u32)> = None;
    while c.more() {
        let at = c.pos;
        let (slot, field) = match c.varint()? {
            k if k == key(1, LEN) => (&mut name, "name"),
            k if k == key(2, LEN) => (&mut value, "value"),
            k => {
                c.other(k, at, LABEL)?;
                continue;
            }
        };
        let s = c.len_delim().map_err(|e| e.at(field, None))?;
        if let Some((a, b)) = slot.replace((s.pos as u32, s.end as u32))
            && std::str::from_utf8(&c.buf[a as usize..b as usize]).is_err()
        {
            return Err(Fault::new(a as usize, FaultKind::Utf8).at(field, None));
        }
    }
    spans.push(name.unwrap_or((start, start)));
    spans.push(value.unwrap_or((end, end)));
    Ok(())
}

/// One `Sample`; missing fields are 0, as protobuf defaults them.
#[inline]
/// One `Exemplar`, its labels and value pushed to `out`'s exemplar vectors.
fn exemplar<'a>(mut c: Cursor<'a>, out: &mut WriteBatch<'a>, at0: usize) -> Result<(), Fault> {
    // Every field checked as a full decoder checks it, the unknown ones included.
    check(c, EXEMPLAR)?;
    let first = out.exemplar_labels.len() as u32;
    let mut e = ExemplarSample {
        labels: first..first,
        value: 0.0,
        t: 0,
    };
    let mut spans = Vec::with_capacity(2);
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, LEN) => {
                let m = c.len_delim().map_err(|e| e.at("labels", None))?;
                spans.clear();
                label(m, &mut spans).map_err(|e| e.at("labels", None))?;
                let text = |(a, b): (u32, u32), field| {
                    std::str::from_utf8(&c.buf[a as usize..b as usize]).map_err(|_| {
                        Fault::new(a as usize, FaultKind::Utf8)
                            .at(field, None)
                            .at("labels", None)
                    })
                };
                let name = text(spans[0], "name")?;
                let value = text(spans[1], "value")?;
                make_room(&mut out.exemplar_labels, 1, &mut out.room, at)?;
                out.exemplar_labels.push((name, value));
            }
            k if k == key(2, FIXED64) => {
                e.value = f64::from_bits(c.fixed64().map_err(|e| e.at("value", None))?)
            }
            k if k == key(3, VARINT) => {
                e.t = c.varint().map_err(|e| e.at("timestamp", None))? as i64
            }
            k => c.other(k, at, EXEMPLAR)?,
        }
    }
    e.labels.end = out.exemplar_labels.len() as u32;
    make_room(&mut out.exemplar_samples, 1, &mut out.room, at0)?;
    out.exemplar_samples.push(e);
    Ok(())
}

fn sample(mut c: Cursor<'_>) -> Result<Sample, Fault> {
    let mut s = Sample { t: 0, v: 0.0 };
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, FIXED64) => {
                s.v = f64::from_bits(c.fixed64().map_err(|e| e.at("value", None))?)
            }
            k if k == key(2, VARINT) => {
                s.t = c.varint().map_err(|e| e.at("timestamp", None))? as i64
            }
            k => c.other(k, at, SAMPLE)?,
        }
    }
    Ok(s)
}

/// One `MetricMetadata`.
fn family_metadata<'a>(mut c: Cursor<'a>, out: &mut WriteBatch<'a>) -> Result<(), Fault> {
    let mut m = FamilyMetadata::default();
    while c.more() {
        let at = c.pos;
        let (slot, field) = match c.varint()? {
            k if k == key(1, VARINT) => {
                m.metric_type = MetricType::from_wire(c.varint().map_err(|e| e.at("type", None))?);
                continue;
            }
            k if k == key(2, LEN) => (&mut m.family, "metric_family_name"),
            k if k == key(4, LEN) => (&mut m.help, "help"),
            k if k == key(5, LEN) => (&mut m.unit, "unit"),
            k => {
                c.other(k, at, METRIC_METADATA)?;
                continue;
            }
        };
        let s = c.len_delim().map_err(|e| e.at(field, None))?;
        *slot = std::str::from_utf8(&c.buf[s.pos..s.end])
            .map_err(|_| Fault::new(s.pos, FaultKind::Utf8).at(field, None))?;
    }
    make_room(&mut out.metadata, 1, &mut out.room, c.end)?;
    out.metadata.push(m);
    Ok(())
}
