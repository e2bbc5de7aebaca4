//! What a decoded request holds: flat vectors of labels and samples borrowed from the request
//! buffer, one entry per series pointing into them, reused from request to request.

use std::ops::Range;

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

/// A metric family's type, as both protocol versions number it (1.0's `MetricType`, 2.0's
/// `Metadata.MetricType` without its prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricType {
    /// Not given (0), or a number this version does not know.
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
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
    /// Exemplars it carried (not stored yet).
    pub exemplars: u32,
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
    /// Exemplars the request carried, which the receiver does not store yet.
    pub exemplars: usize,
    /// 2.0 only: the request's symbol table.
    pub symbols: Vec<&'a str>,
    /// 1.0 only: the request's `metadata` entries.
    pub metadata: Vec<FamilyMetadata<'a>>,
    /// Scratch: byte spans of strings waiting for their UTF-8 check.
    pub(super) spans: Vec<(u32, u32)>,
    /// Scratch: byte ranges of a 2.0 request's `TimeSeries` messages.
    pub(super) messages: Vec<(u32, u32)>,
}

/// Bytes a decoded 1.0 body may take in memory (its entries' sizes) per byte of body. A real
/// request takes 3 or less (a minimal series, `{__name__="a"}` with one sample, is 35 bytes
/// of body and 96 of entries); a body of empty messages, two bytes each, would take 24.
pub const ENTRY_BYTES_PER_BODY_BYTE: usize = 6;

/// The same for 2.0, whose label pairs can be two one-byte symbol references, 32 bytes of
/// entry: a real request of many short references approaches 16 (ten labels take 10).
pub const ENTRY_BYTES_PER_BODY_BYTE_V2: usize = 17;

/// What a histogram sample counts for in the density check, bytes: less than it takes (its
/// buckets live on the heap), enough that a body of empty histogram messages is refused.
const HISTOGRAM_ENTRY_BYTES: usize = 48;

/// Entry bytes any body may take, however small.
const ENTRY_BYTES_FLOOR: usize = 1 << 20;

impl<'a> WriteBatch<'a> {
    /// Fails when the entries decoded so far take more memory than a body of `body` bytes
    /// may (`per_byte` of them per body byte, [`ENTRY_BYTES_PER_BODY_BYTE`] for 1.0): a small compressed body of empty messages
    /// decompresses to hundreds of megabytes, each message a few bytes that would become tens
    /// of bytes of entries. Checked as each series is decoded, so such a body is refused
    /// before it takes more than that bound.
    pub(super) fn check_density(
        &self,
        body: usize,
        per_byte: usize,
        at: usize,
    ) -> Result<(), Fault> {
        use std::mem::size_of;
        let entries = self.labels.len() * size_of::<(&str, &str)>()
            + self.series.len() * size_of::<SeriesEntry>()
            + self.samples.len() * size_of::<Sample>()
            + self.start_timestamps.len() * size_of::<i64>()
            + self.symbols.len() * size_of::<&str>()
            + self.metadata.len() * size_of::<FamilyMetadata>()
            + self.histogram_samples.len() * HISTOGRAM_ENTRY_BYTES
            + (self.spans.len() + self.messages.len()) * size_of::<(u32, u32)>();
        let budget = body
            .saturating_mul(per_byte)
            .saturating_add(ENTRY_BYTES_FLOOR);
        if entries > budget {
            return Err(Fault::new(at, FaultKind::Dense { body, entries }));
        }
        Ok(())
    }

    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
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
            symbols: self.symbols.into_iter().map(|_| "").collect(),
            metadata: self
                .metadata
                .into_iter()
                .map(|_| FamilyMetadata::default())
                .collect(),
            spans: self.spans,
            messages: self.messages,
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
