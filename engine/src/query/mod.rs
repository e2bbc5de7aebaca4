//! The read path's common contract: anything that can answer "which series match these
//! matchers, with their samples in `[mint, maxt]`" — local blocks, the head, a bucket store, a
//! set of remote StoreAPI endpoints — implements [`Queryable`], and PromQL evaluates over it.

mod dedup;
mod local;
mod merge;
mod merged;
mod stream;

pub use dedup::{dedup_replicas, dedup_series, is_counter_func, penalty_merge, without_labels};
pub use local::LocalBlocks;
pub use merge::merge_samples;
pub use merged::{Merged, merge_series};
pub use stream::{
    BATCH_CHUNKS, BATCH_SERIES, DecodeScratch, SeriesChunk, SeriesData, SeriesStream, StreamSeries,
    VecStream, collect_stream, decode_many, decode_many_flat, decode_series,
};

use crate::chunk::SampleBatch;
use crate::error::Result;
use crate::labels::{Labels, Matcher};

/// One series with its decoded float samples, sorted by time, no duplicate timestamps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// The series' labels, including `__name__`.
    pub labels: Labels,
    /// Samples in the selected time range; stale markers kept bit for bit.
    pub samples: SampleBatch,
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
        let mut out = Vec::new();
        for s in self.matching(matchers) {
            let lo = s.samples.ts.partition_point(|&t| t < mint);
            let hi = s.samples.ts.partition_point(|&t| t <= maxt);
            if lo < hi {
                out.push(Series {
                    labels: s.labels.clone(),
                    samples: SampleBatch {
                        ts: s.samples.ts[lo..hi].to_vec(),
                        val: s.samples.val[lo..hi].to_vec(),
                    },
                });
            }
        }
        Ok(out)
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
            let s = &self.all[i];
            let lo = s.samples.ts.partition_point(|&t| t < self.mint);
            let hi = s.samples.ts.partition_point(|&t| t <= self.maxt);
            if lo >= hi {
                continue;
            }
            batch.push(StreamSeries {
                labels: s.labels.clone(),
                data: SeriesData::Decoded(SampleBatch {
                    ts: s.samples.ts[lo..hi].to_vec(),
                    val: s.samples.val[lo..hi].to_vec(),
                }),
            });
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
        self.matching(matchers)
            .filter(move |s| s.samples.ts.iter().any(|&t| t >= mint && t <= maxt))
    }
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
