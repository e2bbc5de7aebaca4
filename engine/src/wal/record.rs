//! The records inside the log (`tsdb/record`): series, samples, exemplars, native histogram
//! samples (types 7 to 10) and tombstones encoded and decoded as Prometheus does; the other types are
//! recognised by their type byte and left alone.
//!
//! Every encoder appends to the caller's buffer (clear it first to start a record), so one
//! buffer serves a whole batch without allocating.

pub use super::histogram_record::{
    RefFloatHistogramSample, RefHistogramSample, decode_float_histogram_samples_into,
    decode_histogram_samples_into, encode_float_histogram_samples, encode_histogram_samples,
};
use crate::encoding::{Decbuf, DecodeError, put_uvarint, zigzag_encode};
use crate::labels::Labels;

/// The first byte of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum RecordType {
    /// Series refs with their label sets.
    Series = 1,
    /// Float samples (ref, timestamp in ms, value).
    Samples = 2,
    /// Deleted time ranges of series.
    Tombstones = 3,
    /// Exemplars of series.
    Exemplars = 4,
    /// Chunk m-map markers (the out-of-order WBL only).
    MmapMarkers = 5,
    /// Metric type, unit and help of series.
    Metadata = 6,
    /// Native histogram samples.
    HistogramSamples = 7,
    /// Float native histogram samples.
    FloatHistogramSamples = 8,
    /// Native histograms with custom buckets (Prometheus 3.x).
    CustomBucketsHistogramSamples = 9,
    /// Float native histograms with custom buckets (Prometheus 3.x).
    CustomBucketsFloatHistogramSamples = 10,
    /// Float samples with start timestamps (newer Prometheus 3.x, behind a feature flag).
    SamplesV2 = 11,
    /// Histogram samples with start timestamps (newer Prometheus 3.x).
    HistogramSamplesV2 = 12,
    /// Float histogram samples with start timestamps (newer Prometheus 3.x).
    FloatHistogramSamplesV2 = 13,
    /// The mint a checkpoint was cut at (newer Prometheus 3.x checkpoints only).
    MinValidTime = 14,
}

impl RecordType {
    /// The type a record's first byte names, if it is one Prometheus defines.
    pub fn from_byte(b: u8) -> Option<RecordType> {
        use RecordType::*;
        Some(match b {
            1 => Series,
            2 => Samples,
            3 => Tombstones,
            4 => Exemplars,
            5 => MmapMarkers,
            6 => Metadata,
            7 => HistogramSamples,
            8 => FloatHistogramSamples,
            9 => CustomBucketsHistogramSamples,
            10 => CustomBucketsFloatHistogramSamples,
            11 => SamplesV2,
            12 => HistogramSamplesV2,
            13 => FloatHistogramSamplesV2,
            14 => MinValidTime,
            _ => return None,
        })
    }
}

/// One float sample of a series: its ref, timestamp (ms) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    /// The series ref, as given in an earlier series record.
    pub r: u64,
    /// Timestamp, ms since the epoch.
    pub t: i64,
    /// The value; a stale marker is the NaN with bits `0x7ff0000000000002`.
    pub v: f64,
}

/// A deleted time range of a series, both ends inclusive (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// The series ref.
    pub r: u64,
    /// First deleted timestamp, ms.
    pub mint: i64,
    /// Last deleted timestamp, ms.
    pub maxt: i64,
}

/// A series ref and its labels, borrowed from the record they were decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries<'a> {
    /// The ref later samples records use for this series.
    pub r: u64,
    /// (name, value) pairs in the order the record holds them (sorted by name when written
    /// by Prometheus or Gauntlet).
    pub labels: Vec<(&'a str, &'a str)>,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Record<'a> {
    /// Series refs with their labels.
    Series(Vec<RefSeries<'a>>),
    /// Float samples (from a samples record of either version).
    Samples(Vec<RefSample>),
    /// Deleted ranges.
    Tombstones(Vec<Tombstone>),
    /// Exemplars of series.
    Exemplars(Vec<RefExemplar>),
    /// Any other record, by its type byte: metadata, histograms and types newer
    /// than this code. Replay skips them for now.
    Other(u8),
}

/// Why a record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record has no bytes, so no type. The log holds a record no Prometheus writes.
    #[error("empty WAL record")]
    Empty,
    /// A decoder was called on a record of another type (a caller's mistake).
    #[error("WAL record of type {actual} where {expected:?} was expected")]
    WrongType {
        /// The type the decoder reads.
        expected: RecordType,
        /// The record's first byte.
        actual: u8,
    },
    /// The record's body is cut short or malformed at `source`'s offset (from the record's
    /// start). The record is corrupt although its CRC matched: written by a broken writer.
    #[error("{record:?} record: {source}")]
    Malformed {
        /// The record's type.
        record: RecordType,
        /// Where decoding stopped.
        #[source]
        source: DecodeError,
    },
}

/// The type of `rec`, if its first byte names one Prometheus defines.
pub fn record_type(rec: &[u8]) -> Option<RecordType> {
    rec.first().copied().and_then(RecordType::from_byte)
}

/// Appends a series record holding every `(ref, labels)` of `series`.
pub fn encode_series<'a>(out: &mut Vec<u8>, series: impl IntoIterator<Item = (u64, &'a Labels)>) {
    begin_series(out);
    for (r, labels) in series {
        encode_series_pairs(
            out,
            r,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
    }
}

/// Appends the type byte of a series record: follow it with one [`encode_series_pairs`] per
/// series (a record of no series is valid and decodes to none).
pub fn begin_series(out: &mut Vec<u8>) {
    out.push(RecordType::Series as u8);
}

/// Appends one series entry (after [`begin_series`]): the ref, then the label pairs, which
/// should be sorted by name with unique names, as Prometheus's label sets are.
pub fn encode_series_pairs<'a>(
    out: &mut Vec<u8>,
    r: u64,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.extend_from_slice(&r.to_be_bytes());
    // The count comes first but is known last: a one-byte slot covers every label set under
    // 128 labels, and a larger count moves the pairs up to make room.
    let slot = out.len();
    out.push(0);
    let mut n = 0u64;
    for (name, value) in labels {
        put_uvarint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_uvarint(out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
        n += 1;
    }
    if n < 0x80 {
        out[slot] = n as u8;
    } else {
        let mut count = Vec::with_capacity(10);
        put_uvarint(&mut count, n);
        out.splice(slot..slot + 1, count);
    }
}

/// Appends a samples record (version 1, the one Prometheus 2.x and 3.x write by default). An
/// empty slice gives the type byte alone, as Prometheus writes it.
pub fn encode_samples(out: &mut Vec<u8>, samples: &[RefSample]) {
    out.push(RecordType::Samples as u8);
    let Some(first) = samples.first() else {
        return;
    };
    out.reserve(16 + samples.len() * 12);
    out.extend_from_slice(&first.r.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        // Go computes the ref delta as int64(ref) - int64(first), wrapping.
        put_uvarint(
            out,
            zigzag_encode((s.r as i64).wrapping_sub(first.r as i64)),
        );
        put_uvarint(out, zigzag_encode(s.t.wrapping_sub(first.t)));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record, one entry per range.
pub fn encode_tombstones(out: &mut Vec<u8>, tombstones: &[Tombstone]) {
    out.push(RecordType::Tombstones as u8);
    for s in tombstones {
        out.extend_from_slice(&s.r.to_be_bytes());
        put_uvarint(out, zigzag_encode(s.mint));
        put_uvarint(out, zigzag_encode(s.maxt));
    }
}

/// One exemplar of a series: its ref, timestamp (ms), value and its own labels (the trace id
/// and the like), as an exemplars record holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RefExemplar {
    /// The series ref, as given in an earlier series record.
    pub r: u64,
    /// Timestamp, ms since the epoch.
    pub t: i64,
    /// The exemplar's value.
    pub v: f64,
    /// The exemplar's labels, in record order (sorted by name when Prometheus or Gauntlet
    /// wrote them).
    pub labels: Labels,
}

/// Appends an exemplars record: laid out as a samples record (first ref and timestamp, then
/// deltas), each entry followed by its label count and pairs. An empty slice gives the type
/// byte alone, as Prometheus writes it.
pub fn encode_exemplars(out: &mut Vec<u8>, exemplars: &[RefExemplar]) {
    out.push(RecordType::Exemplars as u8);
    let Some(first) = exemplars.first() else {
        return;
    };
    out.extend_from_slice(&first.r.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for e in exemplars {
        put_uvarint(
            out,
            zigzag_encode((e.r as i64).wrapping_sub(first.r as i64)),
        );
        put_uvarint(out, zigzag_encode(e.t.wrapping_sub(first.t)));
        out.extend_from_slice(&e.v.to_bits().to_be_bytes());
        put_uvarint(out, e.labels.len() as u64);
        for l in &e.labels {
            put_uvarint(out, l.name.len() as u64);
            out.extend_from_slice(l.name.as_bytes());
            put_uvarint(out, l.value.len() as u64);
            out.extend_from_slice(l.value.as_bytes());
        }
    }
}

/// Appends the exemplars of an exemplars record to `out`.
pub fn decode_exemplars_into(rec: &[u8], out: &mut Vec<RefExemplar>) -> Result<(), RecordError> {
    let (t, mut d) = body(rec, &[RecordType::Exemplars])?;
    let malformed = |source| RecordError::Malformed { record: t, source };
    if d.remaining() == 0 {
        return Ok(());
    }
    let first_r = d.be64().map_err(malformed)?;
    let first_t = d.be64().map_err(malformed)? as i64;
    let mut pairs = Vec::new();
    while d.remaining() > 0 {
        let dr = d.varint().map_err(malformed)?;
        let dt = d.varint().map_err(malformed)?;
        let v = f64::from_bits(d.be64().map_err(malformed)?);
        let n = d.uvarint().map_err(malformed)?;
        pairs.clear();
        for _ in 0..n {
            let name = d.uvarint_str().map_err(malformed)?;
            let value = d.uvarint_str().map_err(malformed)?;
            pairs.push((name, value));
        }
        out.push(RefExemplar {
            r: (first_r as i64).wrapping_add(dr) as u64,
            t: first_t.wrapping_add(dt),
            v,
            labels: Labels::from_pairs(pairs.iter().copied()),
        });
    }
    Ok(())
}

/// Decodes any record. Series labels borrow from `rec`.
pub fn decode(rec: &[u8]) -> Result<Record<'_>, RecordError> {
    let &first = rec.first().ok_or(RecordError::Empty)?;
    match RecordType::from_byte(first) {
        Some(RecordType::Series) => {
            let mut out = Vec::new();
            decode_series_into(rec, &mut out)?;
            Ok(Record::Series(out))
        }
        Some(RecordType::Samples | RecordType::SamplesV2) => {
            let mut out = Vec::new();
            decode_samples_into(rec, &mut out)?;
            Ok(Record::Samples(out))
        }
        Some(RecordType::Tombstones) => {
            let mut out = Vec::new();
            decode_tombstones_into(rec, &mut out)?;
            Ok(Record::Tombstones(out))
        }
        Some(RecordType::Exemplars) => {
            let mut out = Vec::new();
            decode_exemplars_into(rec, &mut out)?;
            Ok(Record::Exemplars(out))
        }
        _ => Ok(Record::Other(first)),
    }
}

/// The body of `rec` after checking its type byte is one of `want`.
fn body<'a>(rec: &'a [u8], want: &[RecordType]) -> Result<(RecordType, Decbuf<'a>), RecordError> {
    let &first = rec.first().ok_or(RecordError::Empty)?;
    match RecordType::from_byte(first) {
        Some(t) if want.contains(&t) => Ok((t, Decbuf::new(&rec[1..], 1))),
        _ => Err(RecordError::WrongType {
            expected: want[0],
            actual: first,
        }),
    }
}

/// Appends the series of a series record to `out` (cleared by the caller, so a replay can
/// reuse one vector).
pub fn decode_series_into<'a>(
    rec: &'a [u8],
    out: &mut Vec<RefSeries<'a>>,
) -> Result<(), RecordError> {
    let mut flat = FlatSeries::default();
    decode_series_flat(rec, &mut flat)?;
    out.extend(flat.iter().map(|(r, labels)| RefSeries {
        r,
        labels: labels.to_vec(),
    }));
    Ok(())
}

/// The series of a series record in two vectors, not one per series: what a replay of a
/// million series decodes without a million allocations.
#[derive(Debug, Default)]
pub struct FlatSeries<'a> {
    /// Each series' ref and the end of its labels in `labels`.
    series: Vec<(u64, u32)>,
    labels: Vec<(&'a str, &'a str)>,
}

impl<'a> FlatSeries<'a> {
    /// Each series: its ref and its (name, value) pairs in record order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[(&'a str, &'a str)])> + '_ {
        let mut start = 0;
        self.series.iter().map(move |&(r, end)| {
            let labels = &self.labels[start..end as usize];
            start = end as usize;
            (r, labels)
        })
    }
}

/// Decodes a series record into `out` (emptied first); on an error `out` holds nothing.
pub fn decode_series_flat<'a>(rec: &'a [u8], out: &mut FlatSeries<'a>) -> Result<(), RecordError> {
    out.series.clear();
    out.labels.clear();
    let decoded = decode_series_pairs(rec, out);
    if decoded.is_err() {
        out.series.clear();
        out.labels.clear();
    }
    decoded
}

fn decode_series_pairs<'a>(rec: &'a [u8], out: &mut FlatSeries<'a>) -> Result<(), RecordError> {
    let (t, mut d) = body(rec, &[RecordType::Series])?;
    let malformed = |source| RecordError::Malformed { record: t, source };
    while d.remaining() > 0 {
        let r = d.be64().map_err(malformed)?;
        // A count past the record's end fails at the first missing pair.
        let n = d.uvarint().map_err(malformed)?;
        for _ in 0..n {
            let name = d.uvarint_str().map_err(malformed)?;
            let value = d.uvarint_str().map_err(malformed)?;
            out.labels.push((name, value));
        }
        // Each pair takes at least two of the record's bytes, so the count fits.
        out.series.push((r, out.labels.len() as u32));
    }
    Ok(())
}

/// Appends the samples of a samples record (either version; start timestamps of version 2
/// are dropped) to `out`.
pub fn decode_samples_into(rec: &[u8], out: &mut Vec<RefSample>) -> Result<(), RecordError> {
    let (t, mut d) = body(rec, &[RecordType::Samples, RecordType::SamplesV2])?;
    let malformed = |source| RecordError::Malformed { record: t, source };
    if d.remaining() == 0 {
        return Ok(());
    }
    // At least ten bytes per sample.
    out.reserve(d.remaining() / 10);
    if t == RecordType::SamplesV2 {
        return decode_samples_v2(&mut d, out).map_err(malformed);
    }
    let first_r = d.be64().map_err(malformed)?;
    let first_t = d.be64().map_err(malformed)? as i64;
    while d.remaining() > 0 {
        let dr = d.varint().map_err(malformed)?;
        let dt = d.varint().map_err(malformed)?;
        let v = f64::from_bits(d.be64().map_err(malformed)?);
        out.push(RefSample {
            r: (first_r as i64).wrapping_add(dr) as u64,
            t: first_t.wrapping_add(dt),
            v,
        });
    }
    Ok(())
}

/// Samples V2: the first sample's ref, timestamp and start timestamp as varints, then per
/// sample the ref as a delta from the previous sample's, the timestamp from the first's, and a
/// start-timestamp marker byte (0 none, 1 as the previous, 2 a varint follows).
fn decode_samples_v2(d: &mut Decbuf<'_>, out: &mut Vec<RefSample>) -> Result<(), DecodeError> {
    let mut r = d.varint()?;
    let first_t = d.varint()?;
    d.varint()?;
    let mut t = first_t;
    loop {
        let v = f64::from_bits(d.be64()?);
        out.push(RefSample { r: r as u64, t, v });
        if d.remaining() == 0 {
            return Ok(());
        }
        r = r.wrapping_add(d.varint()?);
        t = first_t.wrapping_add(d.varint()?);
        if d.u8()? > 1 {
            d.varint()?;
        }
    }
}

/// Appends the ranges of a tombstones record to `out`.
pub fn decode_tombstones_into(rec: &[u8], out: &mut Vec<Tombstone>) -> Result<(), RecordError> {
    let (t, mut d) = body(rec, &[RecordType::Tombstones])?;
    let malformed = |source| RecordError::Malformed { record: t, source };
    while d.remaining() > 0 {
        out.push(Tombstone {
            r: d.be64().map_err(malformed)?,
            mint: d.varint().map_err(malformed)?,
            maxt: d.varint().map_err(malformed)?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An exemplars record as Prometheus's encoder writes it, byte by byte, and back.
    #[test]
    fn exemplars_layout_is_prometheus() {
        let mut out = Vec::new();
        let ex = vec![
            RefExemplar {
                r: 5,
                t: 1000,
                v: 1.5,
                labels: Labels::from_pairs([("trace_id", "ab")]),
            },
            RefExemplar {
                r: 3,
                t: 1015,
                v: 2.0,
                labels: Labels::empty(),
            },
        ];
        encode_exemplars(&mut out, &ex);
        let mut want = vec![4u8];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1000u64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        want.extend_from_slice(&[1, 8]);
        want.extend_from_slice(b"trace_id");
        want.extend_from_slice(&[2]);
        want.extend_from_slice(b"ab");
        // ref delta -2, time delta 15 (zig-zag), no labels.
        want.extend_from_slice(&[3, 30]);
        want.extend_from_slice(&2.0f64.to_bits().to_be_bytes());
        want.push(0);
        assert_eq!(out, want);
        assert_eq!(decode(&out).unwrap(), Record::Exemplars(ex));
        let mut empty = Vec::new();
        encode_exemplars(&mut empty, &[]);
        assert_eq!(empty, vec![4]);
        assert_eq!(decode(&empty).unwrap(), Record::Exemplars(vec![]));
        assert!(decode(&out[..out.len() - 3]).is_err());
    }

    /// A samples record as Prometheus's encoder writes it, byte by byte.
    #[test]
    fn samples_layout_is_prometheus() {
        let mut out = Vec::new();
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        encode_samples(
            &mut out,
            &[
                RefSample {
                    r: 5,
                    t: 1000,
                    v: 1.5,
                },
                RefSample {
                    r: 3,
                    t: 1015,
                    v: stale,
                },
            ],
        );
        let mut want = vec![2];
        want.extend_from_slice(&5u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        // ref delta -2 and time delta 15 as zig-zag varints: 3 and 30.
        want.extend_from_slice(&[3, 30]);
        want.extend_from_slice(&0x7ff0_0000_0000_0002u64.to_be_bytes());
        assert_eq!(out, want);
        let Record::Samples(s) = decode(&out).unwrap() else {
            panic!("not samples");
        };
        assert_eq!(s[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!((s[1].r, s[1].t), (3, 1015));
    }

    #[test]
    fn series_layout_is_prometheus() {
        let mut out = Vec::new();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        encode_series(&mut out, [(7, &l)]);
        let mut want = vec![1, 0, 0, 0, 0, 0, 0, 0, 7, 2, 8];
        want.extend_from_slice(b"__name__");
        want.extend_from_slice(&[2]);
        want.extend_from_slice(b"up");
        want.extend_from_slice(&[3]);
        want.extend_from_slice(b"job");
        want.extend_from_slice(&[1]);
        want.extend_from_slice(b"a");
        assert_eq!(out, want);
    }

    #[test]
    fn empty_records_are_prometheus_shaped() {
        let mut out = Vec::new();
        encode_samples(&mut out, &[]);
        assert_eq!(out, [2]);
        assert_eq!(decode(&out), Ok(Record::Samples(vec![])));
        assert_eq!(decode(&[]), Err(RecordError::Empty));
        assert_eq!(decode(&[6, 1, 2, 3]), Ok(Record::Other(6)));
        assert_eq!(decode(&[200]), Ok(Record::Other(200)));
        assert!(matches!(
            decode(&[2, 1, 2, 3]),
            Err(RecordError::Malformed { .. })
        ));
    }

    #[test]
    fn samples_v2_decode_without_start_times() {
        // Three samples: refs 10, 12, 11; times 100, 115, 130; start times 0, 0 (same), 50.
        let mut rec = vec![11];
        for v in [10i64, 100, 0] {
            put_uvarint(&mut rec, zigzag_encode(v));
        }
        rec.extend_from_slice(&1f64.to_bits().to_be_bytes());
        for (dr, dt, marker) in [(2i64, 15i64, 1u8), (-1, 30, 2)] {
            put_uvarint(&mut rec, zigzag_encode(dr));
            put_uvarint(&mut rec, zigzag_encode(dt));
            rec.push(marker);
            if marker == 2 {
                put_uvarint(&mut rec, zigzag_encode(50));
            }
            rec.extend_from_slice(&2f64.to_bits().to_be_bytes());
        }
        let Record::Samples(s) = decode(&rec).unwrap() else {
            panic!("not samples");
        };
        let got: Vec<(u64, i64)> = s.iter().map(|s| (s.r, s.t)).collect();
        assert_eq!(got, [(10, 100), (12, 115), (11, 130)]);
    }

    #[test]
    fn many_labels_take_a_longer_count() {
        let names: Vec<String> = (0..300).map(|i| format!("l{i:03}")).collect();
        let mut out = Vec::new();
        begin_series(&mut out);
        encode_series_pairs(&mut out, 1, names.iter().map(|n| (n.as_str(), "v")));
        let Record::Series(s) = decode(&out).unwrap() else {
            panic!("not series");
        };
        assert_eq!(s[0].labels.len(), 300);
        assert_eq!(s[0].labels[299], ("l299", "v"));
    }

    fn label_sets() -> impl Strategy<Value = Vec<(u64, Vec<(String, String)>)>> {
        proptest::collection::vec(
            (
                any::<u64>(),
                proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,20}"), 0..8),
            ),
            0..20,
        )
    }

    proptest! {
        #[test]
        fn series_round_trip(series in label_sets()) {
            let mut out = Vec::new();
            begin_series(&mut out);
            for (r, l) in &series {
                encode_series_pairs(&mut out, *r, l.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            }
            let Record::Series(got) = decode(&out).unwrap() else { panic!("not series") };
            prop_assert_eq!(got.len(), series.len());
            for (g, (r, l)) in got.iter().zip(&series) {
                prop_assert_eq!(g.r, *r);
                let want: Vec<(&str, &str)> = l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                prop_assert_eq!(&g.labels, &want);
            }
        }

        #[test]
        fn samples_round_trip(
            samples in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50),
        ) {
            let samples: Vec<RefSample> = samples
                .into_iter()
                .map(|(r, t, v)| RefSample { r, t, v: f64::from_bits(v) })
                .collect();
            let mut out = Vec::new();
            encode_samples(&mut out, &samples);
            let mut got = Vec::new();
            decode_samples_into(&out, &mut got).unwrap();
            prop_assert_eq!(got.len(), samples.len());
            for (g, s) in got.iter().zip(&samples) {
                prop_assert_eq!((g.r, g.t, g.v.to_bits()), (s.r, s.t, s.v.to_bits()));
            }
        }

        #[test]
        fn tombstones_round_trip(
            t in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..30),
        ) {
            let t: Vec<Tombstone> = t.into_iter().map(|(r, mint, maxt)| Tombstone { r, mint, maxt }).collect();
            let mut out = Vec::new();
            encode_tombstones(&mut out, &t);
            prop_assert_eq!(decode(&out).unwrap(), Record::Tombstones(t));
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(rec in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&rec);
        }
    }
}
