//! Remote write 2.0: `io.prometheus.write.v2.Request` (`proto/proto/prometheus/write/v2/`),
//! whose strings live once in the request's symbol table and are referenced by index.

use super::batch::{
    DecodeLimits, ExemplarSample, MetricType, Sample, SeriesEntry, WriteBatch, make_room, take,
};
use super::histogram::histogram;
use super::wire::{Cursor, FIXED64, Fault, FaultKind, Field, Kind, LEN, VARINT, key, strs};

const SAMPLE: &[Field] = &[
    Field::new(1, "value", Kind::Fixed64),
    Field::new(2, "timestamp", Kind::Varint),
    Field::new(3, "start_timestamp", Kind::Varint),
];
const EXEMPLAR: &[Field] = &[
    Field::new(1, "labels_refs", Kind::PackedVarint),
    Field::new(2, "value", Kind::Fixed64),
    Field::new(3, "timestamp", Kind::Varint),
];
const METADATA: &[Field] = &[
    Field::new(1, "type", Kind::Varint),
    Field::new(3, "help_ref", Kind::Varint),
    Field::new(4, "unit_ref", Kind::Varint),
];
/// 1.0's `Histogram` and its field 17, the start timestamp.
const HISTOGRAM_FIELDS: [Field; 17] = {
    let mut out = [Field::new(17, "start_timestamp", Kind::Varint); 17];
    let mut i = 0;
    while i < super::v1::HISTOGRAM_FIELDS.len() {
        out[i] = super::v1::HISTOGRAM_FIELDS[i];
        i += 1;
    }
    out
};
const HISTOGRAM: &[Field] = &HISTOGRAM_FIELDS;
/// Field 6 (the former `created_timestamp`) is reserved in the current `.proto`, so it is
/// not declared: read when it is a varint, skipped like any unknown field otherwise.
const TIME_SERIES: &[Field] = &[
    Field::new(1, "labels_refs", Kind::PackedVarint),
    Field::new(2, "samples", Kind::Msg(SAMPLE)),
    Field::new(3, "histograms", Kind::Msg(HISTOGRAM)),
    Field::new(4, "exemplars", Kind::Msg(EXEMPLAR)),
    Field::new(5, "metadata", Kind::Msg(METADATA)),
];
const REQUEST: &[Field] = &[
    Field::new(4, "symbols", Kind::Str),
    Field::new(5, "timeseries", Kind::Msg(TIME_SERIES)),
];

/// Decodes a whole `Request` into `out` (already cleared, its room set) under `limits`.
/// Symbols may follow the series that use them, so a first pass finds both and a second
/// decodes the series.
pub(super) fn request<'a>(
    buf: &'a [u8],
    limits: &DecodeLimits,
    out: &mut WriteBatch<'a>,
) -> Result<(), Fault> {
    let mut c = Cursor::new(buf);
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(4, LEN) => {
                let i = out.spans.len();
                let s = c.len_delim().map_err(|e| e.at("symbols", Some(i)))?;
                make_room(&mut out.spans, 1, &mut out.room, at)?;
                out.spans.push((s.pos as u32, s.end as u32));
            }
            k if k == key(5, LEN) => {
                let i = out.messages.len();
                let m = c.len_delim().map_err(|e| e.at("timeseries", Some(i)))?;
                make_room(&mut out.messages, 1, &mut out.room, at)?;
                out.messages.push((m.pos as u32, m.end as u32));
            }
            k => c.other(k, at, REQUEST)?,
        }
    }
    make_room(&mut out.symbols, out.spans.len(), &mut out.room, 0)?;
    let symbols = &mut out.symbols;
    strs(buf, &out.spans, |s| symbols.push(s))
        .map_err(|i| Fault::new(out.spans[i].0 as usize, FaultKind::Utf8).at("symbols", Some(i)))?;
    for i in 0..out.messages.len() {
        let (pos, end) = out.messages[i];
        let m = Cursor {
            buf,
            pos: pos as usize,
            end: end as usize,
        };
        series(m, out).map_err(|e| e.at("timeseries", Some(i)))?;
        super::v1::over_limits(out, limits, pos as usize)?;
    }
    Ok(())
}

/// The symbol `r` names; 0 is "" even in an empty table, since senders use 0 for "none".
#[inline(always)]
fn symbol<'a>(symbols: &[&'a str], r: u64, at: usize) -> Result<&'a str, Fault> {
    match usize::try_from(r).ok().and_then(|i| symbols.get(i)) {
        Some(s) => Ok(s),
        None if r == 0 => Ok(""),
        None => Err(Fault::new(
            at,
            FaultKind::SymbolRef {
                reference: r,
                symbols: symbols.len(),
            },
        )),
    }
}

/// One `TimeSeries`.
fn series<'a>(mut c: Cursor<'a>, out: &mut WriteBatch<'a>) -> Result<(), Fault> {
    let WriteBatch {
        labels,
        samples,
        start_timestamps,
        symbols,
        histogram_samples,
        exemplar_samples,
        exemplar_labels,
        room,
        ..
    } = out;
    let first_histogram = histogram_samples.len();
    let first_exemplar = exemplar_samples.len();
    let first_label = labels.len();
    let first_sample = samples.len();
    let mut entry = SeriesEntry::default();
    // References arrive one at a time (packed runs may be split, or not packed at all); a
    // label name waits here for its value.
    let mut name: Option<&'a str> = None;
    let mut refs = 0usize;
    let mut push_ref = |r: u64, at: usize, room: &mut usize| -> Result<(), Fault> {
        let s = symbol(symbols, r, at).map_err(|e| e.at("labels_refs", Some(refs)))?;
        refs += 1;
        match name.take() {
            None => name = Some(s),
            Some(n) => {
                make_room(labels, 1, room, at)?;
                labels.push((n, s));
            }
        }
        Ok(())
    };
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, LEN) => {
                let mut m = c.len_delim().map_err(|e| e.at("labels_refs", None))?;
                while m.more() {
                    let at = m.pos;
                    push_ref(m.varint().map_err(|e| e.at("labels_refs", None))?, at, room)?;
                }
            }
            k if k == key(1, VARINT) => {
                push_ref(c.varint().map_err(|e| e.at("labels_refs", None))?, at, room)?
            }
            k if k == key(2, LEN) => {
                let i = samples.len() - first_sample;
                let m = c.len_delim().map_err(|e| e.at("samples", Some(i)))?;
                let (s, st) = sample(m).map_err(|e| e.at("samples", Some(i)))?;
                if st != 0 || !start_timestamps.is_empty() {
                    let more = samples.len() + 1 - start_timestamps.len();
                    make_room(start_timestamps, more, room, at)?;
                    start_timestamps.resize(samples.len(), 0);
                    start_timestamps.push(st);
                }
                make_room(samples, 1, room, at)?;
                samples.push(s);
            }
            k if k == key(3, LEN) => {
                let i = entry.histograms as usize;
                let m = c.len_delim().map_err(|e| e.at("histograms", Some(i)))?;
                let h = histogram(m, HISTOGRAM, room).map_err(|e| e.at("histograms", Some(i)))?;
                make_room(histogram_samples, 1, room, at)?;
                histogram_samples.push(h);
                entry.histograms += 1;
            }
            k if k == key(4, LEN) => {
                let i = entry.exemplars as usize;
                let m = c.len_delim().map_err(|e| e.at("exemplars", Some(i)))?;
                let e = exemplar(m, symbols, exemplar_labels, room)
                    .map_err(|e| e.at("exemplars", Some(i)))?;
                make_room(exemplar_samples, 1, room, at)?;
                exemplar_samples.push(e);
                entry.exemplars += 1;
            }
            k if k == key(5, LEN) => {
                let m = c.len_delim().map_err(|e| e.at("metadata", None))?;
                metadata(m, symbols, &mut entry).map_err(|e| e.at("metadata", None))?;
            }
            k if k == key(6, VARINT) => entry.created_timestamp = c.varint()? as i64,
            k => c.other(k, at, TIME_SERIES)?,
        }
    }
    if name.is_some() {
        return Err(Fault::new(c.end, FaultKind::OddRefs(refs)).at("labels_refs", None));
    }
    let own = &mut labels[first_label..];
    if !own.is_sorted_by(|a, b| name_le(a.0, b.0)) {
        // Prometheus's and Thanos's receivers sort 2.0 labels by name before anything else
        // looks at them, so an unsorted request is accepted as if sorted; a stable sort keeps
        // duplicate names in request order. Its scratch (all of the labels up to 8 MB, at
        // least half of them) is an allocation too.
        let size = size_of::<(&str, &str)>();
        let scratch = own.len().min(8_000_000 / size).max(own.len() / 2) * size;
        take(room, scratch, c.end)?;
        own.sort_by(|a, b| a.0.cmp(b.0));
    }
    entry.labels = first_label as u32..labels.len() as u32;
    entry.samples = first_sample as u32..samples.len() as u32;
    entry.histogram_samples = first_histogram as u32..out.histogram_samples.len() as u32;
    entry.exemplar_samples = first_exemplar as u32..out.exemplar_samples.len() as u32;
    out.histograms += entry.histograms as usize;
    out.exemplars += entry.exemplars as usize;
    make_room(&mut out.series, 1, &mut out.room, c.end)?;
    out.series.push(entry);
    Ok(())
}

/// `a <= b`, deciding on the first bytes when they differ: adjacent label names mostly do,
/// and a full comparison is a call to `memcmp`.
#[inline(always)]
fn name_le(a: &str, b: &str) -> bool {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a <= b,
    }
}

/// One `Sample` and its start timestamp (0 when not given).
#[inline]
fn sample(mut c: Cursor<'_>) -> Result<(Sample, i64), Fault> {
    let mut s = Sample { t: 0, v: 0.0 };
    let mut st = 0;
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, FIXED64) => {
                s.v = f64::from_bits(c.fixed64().map_err(|e| e.at("value", None))?)
            }
            k if k == key(2, VARINT) => {
                s.t = c.varint().map_err(|e| e.at("timestamp", None))? as i64
            }
            k if k == key(3, VARINT) => {
                st = c.varint().map_err(|e| e.at("start_timestamp", None))? as i64
            }
            k => c.other(k, at, SAMPLE)?,
        }
    }
    Ok((s, st))
}

/// One `Exemplar`, checking that its label references resolve and pair up; its labels are
/// pushed to `labels`.
fn exemplar<'a>(
    mut c: Cursor<'_>,
    symbols: &[&'a str],
    labels: &mut Vec<(&'a str, &'a str)>,
    room: &mut usize,
) -> Result<ExemplarSample, Fault> {
    let first = labels.len() as u32;
    let mut e = ExemplarSample {
        labels: first..first,
        value: 0.0,
        t: 0,
    };
    let mut name: Option<&'a str> = None;
    let mut push = |s: &'a str, at: usize, room: &mut usize| -> Result<(), Fault> {
        match name.take() {
            None => name = Some(s),
            Some(n) => {
                make_room(labels, 1, room, at)?;
                labels.push((n, s));
            }
        }
        Ok(())
    };
    let mut refs = 0usize;
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, LEN) => {
                let mut m = c.len_delim().map_err(|e| e.at("labels_refs", None))?;
                while m.more() {
                    let at = m.pos;
                    let r = m.varint().map_err(|e| e.at("labels_refs", None))?;
                    let s = symbol(symbols, r, at).map_err(|e| e.at("labels_refs", Some(refs)))?;
                    push(s, at, room)?;
                    refs += 1;
                }
            }
            k if k == key(1, VARINT) => {
                let r = c.varint().map_err(|e| e.at("labels_refs", None))?;
                let s = symbol(symbols, r, at).map_err(|e| e.at("labels_refs", Some(refs)))?;
                push(s, at, room)?;
                refs += 1;
            }
            k if k == key(2, FIXED64) => {
                e.value = f64::from_bits(c.fixed64().map_err(|e| e.at("value", None))?);
            }
            k if k == key(3, VARINT) => {
                e.t = c.varint().map_err(|e| e.at("timestamp", None))? as i64;
            }
            k => c.other(k, at, EXEMPLAR)?,
        }
    }
    if !refs.is_multiple_of(2) {
        return Err(Fault::new(c.end, FaultKind::OddRefs(refs)).at("labels_refs", None));
    }
    e.labels.end = labels.len() as u32;
    Ok(e)
}

/// One `Metadata`, merged into the series' entry: a message given twice merges field by
/// field, as protobuf merges a singular message field.
fn metadata(mut c: Cursor<'_>, symbols: &[&str], entry: &mut SeriesEntry) -> Result<(), Fault> {
    while c.more() {
        let at = c.pos;
        match c.varint()? {
            k if k == key(1, VARINT) => {
                entry.metric_type =
                    MetricType::from_wire(c.varint().map_err(|e| e.at("type", None))?)
            }
            k if k == key(3, VARINT) || k == key(4, VARINT) => {
                let field = if k == key(3, VARINT) {
                    "help_ref"
                } else {
                    "unit_ref"
                };
                let at = c.pos;
                let r = c.varint().map_err(|e| e.at(field, None))?;
                symbol(symbols, r, at).map_err(|e| e.at(field, None))?;
                // `symbol` accepted it, so it fits in 32 bits.
                let r = r as u32;
                if field == "help_ref" {
                    entry.help_ref = r;
                } else {
                    entry.unit_ref = r;
                }
            }
            k => c.other(k, at, METADATA)?,
        }
    }
    Ok(())
}
