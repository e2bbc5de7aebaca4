//! The read path's common contract: anything that can answer "which series match these
//! matchers, with their samples in `[mint, maxt]`" — local blocks, the head, a bucket store, a
//! set of remote StoreAPI endpoints — implements [`Queryable`], and PromQL evaluates over it.

mod cancel;
mod dedup;
mod external;
mod local;
mod merge;
mod merged;
mod pool;
mod stream;

pub use cancel::{Cancel, CancelOnDrop, Interrupted};
pub use dedup::{
    dedup_replicas, dedup_replicas_with_histograms, dedup_series, is_counter_func, penalty_merge,
    penalty_merge_lists, penalty_merge_with_histograms, without_labels,
};
pub use external::{external_names_clash, with_external_labels};
pub use local::LocalBlocks;
pub use merge::merge_samples;
pub use merged::{Merged, merge_series, merge_streams};
pub use pool::{PoolQuery, Scope, WorkPool};
pub use stream::{
    BATCH_CHUNKS, BATCH_SERIES, DecodeScratch, Resumed, SeriesChunk, SeriesData, SeriesStream,
    StreamSeries, VecStream, collect_labels, collect_stream, decode_histogram_chunk_into,
    decode_histograms, decode_many, decode_many_flat, decode_series, is_histogram_encoding,
};

use crate::chunk::{HistogramBatch, SampleBatch};
use crate::error::Result;
use crate::labels::{Labels, Matcher};

/// One series with its decoded float samples, sorted by time, no duplicate timestamps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// The series' labels, including `__name__`.
    pub labels: Labels,
    /// Float samples in the selected time range; stale markers kept bit for bit.
    pub samples: SampleBatch,
    /// Native histogram samples in the selected time range, at timestamps where the series has
    /// no float sample.
    pub histograms: HistogramBatch,
}

impl Series {
    /// A series of float samples only.
    pub fn floats(labels: Labels, samples: SampleBatch) -> Series {
        Series {
            labels,
            samples,
            histograms: HistogramBatch::new(),
        }
    }

    /// Whether the series holds no sample of either kind.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.histograms.is_empty()
    }
}

/// What a caller knows about how the selected data will be used; a source may ignore it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// Range query step in ms (0 for an instant query).
    pub step_ms: i64,
    /// The function the selection feeds, when known (`rate`, `max_over_time`, …), or `series`
    /// for the series API, which needs labels only: a source may then answer series without
    /// samples, chosen by chunks overlapping the range as Prometheus chooses them.
    pub func: Option<String>,
    /// Range of the range selector in ms (0 for an instant selector).
    pub range_ms: i64,
    /// When the caller reads only some labels of each series (an aggregation's grouping),
    /// which: a source may leave the others out of the series it hands over. Only a source
    /// that has already merged its series by their whole label sets may.
    pub grouping: Option<Grouping>,
    /// The request's end: a source checks it between blocks and batches and stops reading
    /// once the client is gone or the deadline passed.
    pub cancel: Cancel,
}

/// The labels an aggregation's input is read for: `__name__` and, with `by`, the named
/// labels, or without it every label but the named ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grouping {
    /// `by` (keep the named labels) rather than `without` (drop them).
    pub by: bool,
    /// The labels named.
    pub names: Vec<String>,
}

impl Grouping {
    /// `by ()`: the metric name alone.
    pub fn default_by() -> Grouping {
        Grouping {
            by: true,
            names: Vec::new(),
        }
    }

    /// Whether a series' label `name` is read.
    pub fn reads(&self, name: &[u8]) -> bool {
        name == b"__name__" || self.names.iter().any(|n| n.as_bytes() == name) == self.by
    }
}

/// One selection as a caller will ask for it: matchers and time range (ms, inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Series matching every one are selected.
    pub matchers: Vec<Matcher>,
    /// Start of the range.
    pub mint: i64,
    /// End of the range.
    pub maxt: i64,
}

/// A source of series. Implementations are synchronous: callers on an async runtime run them
/// on a blocking thread.
pub trait Queryable: Send + Sync {
    /// Series matching every matcher that have samples in `[mint, maxt]` (ms, inclusive),
    /// sorted by labels, each with its samples in that range.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>>;

    /// The same selection as [`Queryable::select`], handed over in bounded batches so the
    /// caller never holds every series' samples at once (see [`SeriesStream`]). The default
    /// runs `select` and hands its answer out in batches; sources that can read lazily
    /// override it.
    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        Ok(Box::new(VecStream::new(
            self.select(matchers, mint, maxt, hints)?,
        )))
    }

    /// Says that `selections` will each be asked for once, soon, by
    /// [`Queryable::select_stream`] (a ruler's group about to evaluate its rules): a source
    /// whose reads each cost a trip to other threads may make them all in one trip now and
    /// hand the answers out when asked. A selection asked for and not announced, or announced
    /// and never asked for, is still right. The default does nothing.
    fn prefetch(&self, selections: &[Selection]) {
        let _ = selections;
    }

    /// Label names, sorted and distinct, of the series matching `matchers` (all series when
    /// empty) in `[mint, maxt]`.
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>>;

    /// Values of label `name`, sorted and distinct, over the series matching `matchers` in
    /// `[mint, maxt]`.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>>;
}

/// An in-memory set of series, as loaded by tests and the PromQL conformance runner.
#[derive(Debug, Clone, Default)]
pub struct MemSeries {
    series: Vec<Series>,
}

impl MemSeries {
    /// Holds `series`; samples of series with equal labels are merged (later wins on equal
    /// timestamps).
    pub fn new(mut series: Vec<Series>) -> Self {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut out: Vec<Series> = Vec::with_capacity(series.len());
        for s in series {
            match out.last_mut() {
                Some(last) if last.labels == s.labels => {
                    last.samples = merge_samples(&[&last.samples, &s.samples]);
                    last.histograms = HistogramBatch::merge(&[&last.histograms, &s.histograms]);
                }
                _ => out.push(s),
            }
        }
        MemSeries { series: out }
    }

    /// Every series held.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    fn matching<'a>(&'a self, matchers: &'a [Matcher]) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| {
            matchers
                .iter()
                .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
        })
    }
}

impl Queryable for MemSeries {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        Ok(self
            .matching(matchers)
            .filter_map(|s| in_range(s, mint, maxt))
            .collect())
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        let picked: Vec<usize> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .map(|(i, _)| i)
            .collect();
        Ok(Box::new(MemStream {
            all: &self.series,
            picked: picked.into_iter(),
            mint,
            maxt,
        }))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .in_range(matchers, mint, maxt)
            .flat_map(|s| s.labels.iter().map(|l| l.name.to_string()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let mut values: Vec<String> = self
            .in_range(matchers, mint, maxt)
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// [`MemSeries`]'s stream: copies each batch's samples in range only when asked for it.
struct MemStream<'a> {
    all: &'a [Series],
    picked: std::vec::IntoIter<usize>,
    mint: i64,
    maxt: i64,
}

impl SeriesStream for MemStream<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        let mut batch = Vec::new();
        for i in self.picked.by_ref() {
            let Some(s) = in_range(&self.all[i], self.mint, self.maxt) else {
                continue;
            };
            batch.push(StreamSeries::from(s));
            if batch.len() == BATCH_SERIES {
                break;
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

impl MemSeries {
    fn in_range<'a>(
        &'a self,
        matchers: &'a [Matcher],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.matching(matchers).filter(move |s| {
            let hit = |t: &i64| *t >= mint && *t <= maxt;
            s.samples.ts.iter().any(hit) || s.histograms.ts.iter().any(hit)
        })
    }
}

/// The part of `s` in `[mint, maxt]`, or `None` when it has no sample there.
fn in_range(s: &Series, mint: i64, maxt: i64) -> Option<Series> {
    let lo = s.samples.ts.partition_point(|&t| t < mint);
    let hi = s.samples.ts.partition_point(|&t| t <= maxt).max(lo);
    let mut histograms = HistogramBatch::new();
    if !s.histograms.is_empty() {
        histograms = s.histograms.clone();
        histograms.truncate_to_range(mint, maxt);
    }
    let out = Series {
        labels: s.labels.clone(),
        samples: SampleBatch {
            ts: s.samples.ts[lo..hi].to_vec(),
            val: s.samples.val[lo..hi].to_vec(),
        },
        histograms,
    };
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::Grouping;

    #[test]
    fn grouping_reads_the_name_and_its_labels() {
        let g = |by: bool, names: &[&str]| Grouping {
            by,
            names: names.iter().map(|n| n.to_string()).collect(),
        };
        let reads = |g: &Grouping| {
            ["__name__", "job", "instance", "le"]
                .into_iter()
                .filter(|n| g.reads(n.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(reads(&Grouping::default_by()), ["__name__"]);
        assert_eq!(reads(&g(true, &["job", "le"])), ["__name__", "job", "le"]);
        assert_eq!(reads(&g(false, &["job"])), ["__name__", "instance", "le"]);
        assert_eq!(
            reads(&g(false, &["__name__"])),
            ["__name__", "job", "instance", "le"]
        );
    }
}
