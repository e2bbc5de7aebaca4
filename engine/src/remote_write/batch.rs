//! What a decoded request holds: flat vectors of labels and samples borrowed from the request
//! buffer, one entry per series pointing into them, reused from request to request.

use std::ops::Range;

use super::Version;
use super::count::Counts;
use super::histogram::HistogramSample;
use super::wire::{Fault, FaultKind};

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Timestamp, ms since the Unix epoch.
    pub t: i64,
    /// Value (stale markers are the NaN with bits `chunk::STALE_NAN_BITS`).
    pub v: f64,
}

/// One exemplar of a series: where its labels sit in [`WriteBatch::exemplar_labels`], its
/// value and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarSample {
    /// Indexes of its labels in [`WriteBatch::exemplar_labels`].
    pub labels: Range<u32>,
    /// The exemplar's value.
    pub value: f64,
    /// Timestamp, ms since the Unix epoch.
    pub t: i64,
}

/// A metric family's type, as both protocol versions number it (1.0's `MetricType`, 2.0's
/// `Metadata.MetricType` without its prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricType {
    /// Not given (0), or a number this version does not know.
    #[default]
    Unknown,
    /// A value that only goes up, reset to 0 on restart (1).
    Counter,
    /// A value that goes up and down (2).
    Gauge,
    /// Classic histogram series: `_bucket`, `_sum` and `_count`, or a native histogram (3).
    Histogram,
    /// A histogram whose buckets may go down, as a gauge (4).
    GaugeHistogram,
    /// Quantiles with `_sum` and `_count` (5).
    Summary,
    /// A constant 1 whose labels carry information (6).
    Info,
    /// One series per state, 1 for the current one (7).
    StateSet,
}

impl MetricType {
    /// The type an enum value on the wire names; the varint is truncated to 32 bits as every
    /// protobuf decoder reads an enum.
    pub fn from_wire(v: u64) -> Self {
        match v as i32 {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

/// One series of a request: where its labels and samples sit in the batch, and what else it
/// carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesEntry {
    /// Indexes of its labels in [`WriteBatch::labels`].
    pub labels: Range<u32>,
    /// Indexes of its float samples in [`WriteBatch::samples`].
    pub samples: Range<u32>,
    /// Native histogram samples it carried.
    pub histograms: u32,
    /// Indexes of its histogram samples in [`WriteBatch::histogram_samples`].
    pub histogram_samples: Range<u32>,
    /// Exemplars it carried.
    pub exemplars: u32,
    /// Indexes of its exemplars in [`WriteBatch::exemplar_samples`].
    pub exemplar_samples: Range<u32>,
    /// 2.0 only: the series' created timestamp, ms, from senders that still fill the former
    /// `TimeSeries` field 6 (Prometheus 3.0 to 3.7); 0 when not given.
    pub created_timestamp: i64,
    /// 2.0 only: `Metadata.type`.
    pub metric_type: MetricType,
    /// 2.0 only: `Metadata.help_ref`, an index into [`WriteBatch::symbols`] (0 = none).
    pub help_ref: u32,
    /// 2.0 only: `Metadata.unit_ref`, an index into [`WriteBatch::symbols`] (0 = none).
    pub unit_ref: u32,
}

/// One entry of a 1.0 request's `metadata` (per metric family, not per series).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyMetadata<'a> {
    /// `MetricMetadata.type`.
    pub metric_type: MetricType,
    /// `metric_family_name`.
    pub family: &'a str,
    /// `help`.
    pub help: &'a str,
    /// `unit`.
    pub unit: &'a str,
}

/// A decoded remote-write request (either version), borrowing its strings from the request
/// buffer. Decoding clears it first and keeps the vectors' allocations, so a receiver that
/// keeps one batch per connection (see [`WriteBatch::recycle`]) does not allocate per series.
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    /// Every series' labels as (name, value) pairs, in series order; series `i`'s are
    /// `labels[series[i].labels]`. 1.0 labels are in request order; 2.0 labels are sorted by
    /// name when the request did not sort them, as Prometheus and Thanos sort them.
    pub labels: Vec<(&'a str, &'a str)>,
    /// One entry per `TimeSeries`, in request order.
    pub series: Vec<SeriesEntry>,
    /// All float samples in series order; series `i`'s are `samples[series[i].samples]`.
    pub samples: Vec<Sample>,
    /// 2.0 only: each sample's start timestamp (ms, 0 = unknown), parallel to `samples`;
    /// empty when no sample of the request carried one.
    pub start_timestamps: Vec<i64>,
    /// Native histogram samples the request carried.
    pub histograms: usize,
    /// Every series' native histogram samples, in series order; series `i`'s are
    /// `histogram_samples[series[i].histogram_samples]`.
    pub histogram_samples: Vec<HistogramSample>,
    /// Exemplars the request carried.
    pub exemplars: usize,
    /// Every series' exemplars, in series order; series `i`'s are
    /// `exemplar_samples[series[i].exemplar_samples]`.
    pub exemplar_samples: Vec<ExemplarSample>,
    /// Every exemplar's labels as (name, value) pairs, in request order.
    pub exemplar_labels: Vec<(&'a str, &'a str)>,
    /// 2.0 only: the request's symbol table.
    pub symbols: Vec<&'a str>,
    /// 1.0 only: the request's `metadata` entries.
    pub metadata: Vec<FamilyMetadata<'a>>,
    /// Scratch: byte spans of strings waiting for their UTF-8 check.
    pub(super) spans: Vec<(u32, u32)>,
    /// Scratch: byte ranges of a 2.0 request's `TimeSeries` messages.
    pub(super) messages: Vec<(u32, u32)>,
    /// Bytes the vectors may still grow by in the decode under way ([`make_room`]).
    pub(super) room: usize,
}

/// Bytes decoding a 1.0 body may allocate for its entries' vectors per byte of body. A real
/// request's entries hold 4 or less (a minimal series, `{__name__="a"}` with one sample, is
/// 35 bytes of body and 96 of entries); vectors that grow by doubling allocate up to three
/// times what they end up holding (a body over 1 MiB is counted first and allocated
/// exactly); a body of empty messages, two bytes each, would hold 28.
pub const ENTRY_BYTES_PER_BODY_BYTE: usize = 12;

/// The same for 2.0, whose label pairs can be two one-byte symbol references, 32 bytes of
/// entry: a real request of many short references holds up to 16 (ten labels take 10).
pub const ENTRY_BYTES_PER_BODY_BYTE_V2: usize = 32;

/// Entry bytes any body may take, however small: the first elements of each vector.
const ENTRY_BYTES_FLOOR: usize = 64 << 10;

/// Entry bytes no request's decoding may allocate, whatever its size. With the largest
/// decompressed body a receiver takes (16 MiB), a request's decoding then holds at most
/// 48 MiB. Series of three labels or more are taken up to that body size (a body over 1 MiB
/// is allocated exactly), the densest requests (one one-letter label a series) up to about
/// 10 MB; one past this is one to split (Prometheus sends a few hundred kilobytes).
pub const MAX_ENTRY_BYTES: usize = 32 << 20;

/// What one request may decode to, fixed before decoding starts: the decoder refuses the
/// request as soon as it would pass one, before allocating past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Memory decoding may allocate for the entries, bytes: what the batch's vectors held
    /// before, and every allocation they (series, labels, samples, symbols, histograms and
    /// their buckets, scratch) take, counted before it is made.
    pub entry_bytes: usize,
    /// Most series (0: no limit).
    pub series: usize,
    /// Most float samples (0: no limit).
    pub samples: usize,
}

impl DecodeLimits {
    /// The limits of a decompressed body of `body` bytes of `version`: entries of at most
    /// [`ENTRY_BYTES_PER_BODY_BYTE`] (1.0) or [`ENTRY_BYTES_PER_BODY_BYTE_V2`] (2.0) bytes per
    /// body byte, plus 64 KiB, and never past [`MAX_ENTRY_BYTES`]; no limit on series or
    /// samples.
    pub fn for_body(version: Version, body: usize) -> Self {
        let per_byte = match version {
            Version::V1 => ENTRY_BYTES_PER_BODY_BYTE,
            Version::V2 => ENTRY_BYTES_PER_BODY_BYTE_V2,
        };
        DecodeLimits {
            entry_bytes: body
                .saturating_mul(per_byte)
                .saturating_add(ENTRY_BYTES_FLOOR)
                .min(MAX_ENTRY_BYTES),
            series: 0,
            samples: 0,
        }
    }
}

/// Makes room in `v` for `more` elements past its length, growing it within `room` (bytes
/// the request's decoding may still allocate) and taking the new allocation from `room`; a
/// [`FaultKind::Dense`] fault at `at` when `room` is too small. A vector grows into a new
/// allocation, and the old one, though freed, may stay resident until the allocator gives
/// its pages back: so every allocation counts, not only what the vectors hold at the end.
/// Vectors double as they would by themselves, within half of what is left, so that one
/// vector cannot take the room the others need.
#[inline(always)]
pub(super) fn make_room<T>(
    v: &mut Vec<T>,
    more: usize,
    room: &mut usize,
    at: usize,
) -> Result<(), Fault> {
    if v.capacity() - v.len() >= more {
        return Ok(());
    }
    grow(v, more, room, at)
}

#[cold]
#[inline(never)]
fn grow<T>(v: &mut Vec<T>, more: usize, room: &mut usize, at: usize) -> Result<(), Fault> {
    let size = size_of::<T>().max(1);
    let need = v.len() + more;
    let fits = *room / size;
    if need > fits {
        return Err(Fault::new(at, FaultKind::Dense));
    }
    let double = v.capacity().saturating_mul(2).max(4);
    let mut new_cap = double.min(fits / 2);
    if new_cap < need {
        // Less than half is left: take what the vector needs to double, as far as it fits,
        // rather than grow by an element at a time.
        new_cap = double.min(fits);
    }
    let new_cap = new_cap.max(need);
    v.reserve_exact(new_cap - v.len());
    // The allocator may hand out more than asked; what the vector holds is what counts.
    *room = room.saturating_sub(v.capacity() * size);
    Ok(())
}

/// Makes `v` hold `n` elements without growing again: one allocation of exactly that many,
/// taken from `room`, when it holds fewer.
fn reserve_exact_in<T>(v: &mut Vec<T>, n: usize, room: &mut usize, at: usize) -> Result<(), Fault> {
    if v.capacity() >= n {
        return Ok(());
    }
    take(room, n.saturating_mul(size_of::<T>()), at)?;
    v.reserve_exact(n - v.len());
    Ok(())
}

/// Takes `bytes` from `room`, or fails with [`FaultKind::Dense`] at `at`.
#[inline]
pub(super) fn take(room: &mut usize, bytes: usize, at: usize) -> Result<(), Fault> {
    match room.checked_sub(bytes) {
        Some(left) => {
            *room = left;
            Ok(())
        }
        None => Err(Fault::new(at, FaultKind::Dense)),
    }
}

impl<'a> WriteBatch<'a> {
    /// Allocates the (cleared) batch's vectors for the entries `n` counts, each once and at
    /// its exact size, within the room.
    pub(super) fn reserve(&mut self, version: Version, n: &Counts) -> Result<(), Fault> {
        let room = &mut self.room;
        reserve_exact_in(&mut self.series, n.series, room, 0)?;
        reserve_exact_in(&mut self.labels, n.labels, room, 0)?;
        reserve_exact_in(&mut self.samples, n.samples, room, 0)?;
        reserve_exact_in(&mut self.histogram_samples, n.histograms, room, 0)?;
        reserve_exact_in(&mut self.metadata, n.metadata, room, 0)?;
        reserve_exact_in(&mut self.symbols, n.symbols, room, 0)?;
        let spans = match version {
            Version::V1 => 2 * n.series_labels,
            Version::V2 => n.symbols,
        };
        reserve_exact_in(&mut self.spans, spans, room, 0)?;
        if version == Version::V2 {
            reserve_exact_in(&mut self.messages, n.series, room, 0)?;
        }
        Ok(())
    }

    /// Bytes the batch's vectors hold (their capacities), which a decode counts against its
    /// [`DecodeLimits::entry_bytes`] before growing any of them.
    pub(super) fn held_bytes(&self) -> usize {
        self.labels.capacity() * size_of::<(&str, &str)>()
            + self.series.capacity() * size_of::<SeriesEntry>()
            + self.samples.capacity() * size_of::<Sample>()
            + self.start_timestamps.capacity() * size_of::<i64>()
            + self.histogram_samples.capacity() * size_of::<HistogramSample>()
            + self.symbols.capacity() * size_of::<&str>()
            + self.metadata.capacity() * size_of::<FamilyMetadata>()
            + (self.spans.capacity() + self.messages.capacity()) * size_of::<(u32, u32)>()
    }

    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Series `i`'s exemplars.
    pub fn series_exemplars(&self, i: usize) -> &[ExemplarSample] {
        self.series.get(i).map_or(&[], |s| {
            &self.exemplar_samples
                [s.exemplar_samples.start as usize..s.exemplar_samples.end as usize]
        })
    }

    /// The labels of exemplar `e` (one of this batch's).
    pub fn exemplar_pairs(&self, e: &ExemplarSample) -> &[(&'a str, &'a str)] {
        self.exemplar_labels
            .get(e.labels.start as usize..e.labels.end as usize)
            .unwrap_or(&[])
    }

    /// Forgets the contents, keeping the allocations.
    pub fn clear(&mut self) {
        self.labels.clear();
        self.series.clear();
        self.samples.clear();
        self.start_timestamps.clear();
        self.histograms = 0;
        self.histogram_samples.clear();
        self.exemplars = 0;
        self.exemplar_samples.clear();
        self.exemplar_labels.clear();
        self.symbols.clear();
        self.metadata.clear();
        self.spans.clear();
        self.messages.clear();
    }

    /// The same batch, emptied, for a buffer of another lifetime: a receiver decodes request
    /// after request into one batch by recycling it before its buffer is reused. The vectors
    /// keep their allocations (collecting an empty vector into one of the same layout reuses
    /// it).
    pub fn recycle<'b>(mut self) -> WriteBatch<'b> {
        self.clear();
        WriteBatch {
            labels: self.labels.into_iter().map(|_| ("", "")).collect(),
            series: self.series,
            samples: self.samples,
            start_timestamps: self.start_timestamps,
            histograms: 0,
            histogram_samples: self.histogram_samples,
            exemplars: 0,
            exemplar_samples: self.exemplar_samples,
            exemplar_labels: self.exemplar_labels.into_iter().map(|_| ("", "")).collect(),
            symbols: self.symbols.into_iter().map(|_| "").collect(),
            metadata: self
                .metadata
                .into_iter()
                .map(|_| FamilyMetadata::default())
                .collect(),
            spans: self.spans,
            messages: self.messages,
            room: 0,
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the request held no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Series `i`'s labels. Panics if `i` is out of range.
    pub fn series_labels(&self, i: usize) -> &[(&'a str, &'a str)] {
        let r = &self.series[i].labels;
        &self.labels[r.start as usize..r.end as usize]
    }

    /// Series `i`'s float samples. Panics if `i` is out of range.
    pub fn series_samples(&self, i: usize) -> &[Sample] {
        let r = &self.series[i].samples;
        &self.samples[r.start as usize..r.end as usize]
    }

    /// Series `i`'s native histogram samples. Panics if `i` is out of range.
    pub fn series_histograms(&self, i: usize) -> &[HistogramSample] {
        let r = &self.series[i].histogram_samples;
        &self.histogram_samples[r.start as usize..r.end as usize]
    }

    /// Series `i`'s help text (2.0 metadata; "" when none). Panics if `i` is out of range.
    pub fn series_help(&self, i: usize) -> &'a str {
        self.symbol(self.series[i].help_ref)
    }

    /// Series `i`'s unit (2.0 metadata; "" when none). Panics if `i` is out of range.
    pub fn series_unit(&self, i: usize) -> &'a str {
        self.symbol(self.series[i].unit_ref)
    }

    fn symbol(&self, r: u32) -> &'a str {
        self.symbols.get(r as usize).copied().unwrap_or("")
    }
}
