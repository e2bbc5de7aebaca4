//! Several sources read as one: a receiver's head and the blocks it has cut, which may hold
//! the same series (and, for a moment after a cut, the same samples).

use std::collections::VecDeque;
use std::sync::Arc;

use super::{
    BATCH_SERIES, DecodeScratch, Queryable, SelectHints, Series, SeriesData, SeriesStream,
    StreamSeries, decode_histograms, decode_series, merge_samples,
};
use crate::chunk::{HistogramBatch, SampleBatch};
use crate::error::Result;
use crate::labels::Matcher;

/// Sources answered as one: series with equal labels are merged, samples at equal
/// timestamps taken once (from the later source).
#[derive(Clone)]
pub struct Merged {
    parts: Vec<Arc<dyn Queryable>>,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Merged {
    /// Reads `parts` as one source.
    pub fn new(parts: Vec<Arc<dyn Queryable>>) -> Self {
        Merged { parts }
    }
}

/// Series lists as one, sorted by labels; series with equal labels are merged, samples at
/// equal timestamps taken once (from the later list).
pub fn merge_series(lists: Vec<Vec<Series>>) -> Vec<Series> {
    let mut all: Vec<(usize, Series)> = lists
        .into_iter()
        .enumerate()
        .flat_map(|(i, l)| l.into_iter().map(move |s| (i, s)))
        .collect();
    // By labels, then by list, so later lists win ties in the merge.
    all.sort_by(|a, b| a.1.labels.cmp(&b.1.labels).then(a.0.cmp(&b.0)));
    let mut out: Vec<Series> = Vec::with_capacity(all.len());
    for (_, s) in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.samples = merge_samples(&[&last.samples, &s.samples]);
                last.histograms = HistogramBatch::merge(&[&last.histograms, &s.histograms]);
            }
            _ => out.push(s),
        }
    }
    out
}

/// Streams of series, each sorted by labels, as one stream sorted by labels: series with equal
/// labels (in several streams, or one after the other in one) are merged, samples at equal
/// timestamps taken once (from the later stream). Holds one batch of each stream at a time.
pub fn merge_streams<'a>(
    streams: Vec<Box<dyn SeriesStream + 'a>>,
    mint: i64,
    maxt: i64,
) -> Box<dyn SeriesStream + 'a> {
    Box::new(MergeStream {
        inputs: streams
            .into_iter()
            .map(|s| Input {
                stream: s,
                buf: VecDeque::new(),
                done: false,
            })
            .collect(),
        mint,
        maxt,
        scratch: DecodeScratch::default(),
    })
}

struct Input<'a> {
    stream: Box<dyn SeriesStream + 'a>,
    buf: VecDeque<StreamSeries>,
    done: bool,
}

struct MergeStream<'a> {
    inputs: Vec<Input<'a>>,
    mint: i64,
    maxt: i64,
    scratch: DecodeScratch,
}

impl MergeStream<'_> {
    /// `later`'s data merged into `earlier`'s: chunks one after the other (a later chunk wins
    /// on equal timestamps), anything else decoded and merged, `later` winning.
    fn merge(&mut self, earlier: &mut StreamSeries, later: StreamSeries) -> Result<()> {
        if let (SeriesData::Chunks(a), SeriesData::Chunks(b)) = (&mut earlier.data, &later.data) {
            a.extend(b.iter().cloned());
            return Ok(());
        }
        let mut parts = Vec::with_capacity(2);
        for s in [&*earlier, &later] {
            let mut samples = SampleBatch::new();
            decode_series(s, self.mint, self.maxt, &mut self.scratch, &mut samples)?;
            let mut histograms = HistogramBatch::new();
            decode_histograms(s, self.mint, self.maxt, &mut histograms)?;
            parts.push((samples, histograms));
        }
        let samples = merge_samples(&[&parts[0].0, &parts[1].0]);
        let histograms = HistogramBatch::merge(&[&parts[0].1, &parts[1].1]);
        earlier.data = if histograms.is_empty() {
            SeriesData::Decoded(samples)
        } else {
            SeriesData::DecodedWithHistograms(samples, histograms)
        };
        Ok(())
    }
}

impl SeriesStream for MergeStream<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        let mut out: Vec<StreamSeries> = Vec::new();
        loop {
            for input in &mut self.inputs {
                if input.buf.is_empty() && !input.done {
                    match input.stream.next_batch()? {
                        Some(b) => input.buf.extend(b),
                        None => input.done = true,
                    }
                }
            }
            // Ties go to the earlier stream, so a later one's samples are merged over them.
            let Some(first) = (0..self.inputs.len())
                .filter(|&i| !self.inputs[i].buf.is_empty())
                .min_by(|&a, &b| {
                    self.inputs[a].buf[0]
                        .labels
                        .cmp(&self.inputs[b].buf[0].labels)
                })
            else {
                break;
            };
            let Some(mut s) = self.inputs[first].buf.pop_front() else {
                break;
            };
            for i in first + 1..self.inputs.len() {
                if self.inputs[i]
                    .buf
                    .front()
                    .is_some_and(|t| t.labels == s.labels)
                    && let Some(t) = self.inputs[i].buf.pop_front()
                {
                    self.merge(&mut s, t)?;
                }
            }
            let full = out.len() == BATCH_SERIES;
            match out.last_mut() {
                Some(last) if last.labels == s.labels => self.merge(last, s)?,
                _ if full => {
                    // Full: the series waits for the next batch at the front of its stream.
                    self.inputs[first].buf.push_front(s);
                    break;
                }
                _ => out.push(s),
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

fn union(mut lists: Vec<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = lists.drain(..).flatten().collect();
    out.sort();
    out.dedup();
    out
}

impl Queryable for Merged {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        let lists = self
            .parts
            .iter()
            .map(|p| p.select(matchers, mint, maxt, hints))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge_series(lists))
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        let streams = self
            .parts
            .iter()
            .map(|p| p.select_stream(matchers, mint, maxt, hints))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge_streams(streams, mint, maxt))
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let lists = self
            .parts
            .iter()
            .map(|p| p.label_names(matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(union(lists))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let lists = self
            .parts
            .iter()
            .map(|p| p.label_values(name, matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(union(lists))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode_xor;
    use crate::labels::Labels;
    use crate::query::{SeriesChunk, VecStream, collect_stream};

    fn series(name: &str, ts: &[i64], v: f64) -> Series {
        let mut b = SampleBatch::new();
        for &t in ts {
            b.push(t, v);
        }
        Series::floats(Labels::from_pairs([("__name__", name)]), b)
    }

    /// A stream handing out `series` as their chunks.
    struct Chunked(Vec<Series>);

    impl SeriesStream for Chunked {
        fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
            let all = std::mem::take(&mut self.0);
            Ok((!all.is_empty()).then(|| {
                all.into_iter()
                    .map(|s| StreamSeries {
                        labels: s.labels,
                        data: SeriesData::Chunks(vec![SeriesChunk {
                            min_time: s.samples.ts[0],
                            max_time: *s.samples.ts.last().unwrap(),
                            encoding: 1,
                            data: encode_xor(&s.samples.ts, &s.samples.val).into(),
                        }]),
                    })
                    .collect()
            }))
        }
    }

    #[test]
    fn merged_streams_equal_merged_lists() {
        let a = vec![series("a", &[1, 2], 1.0), series("c", &[1], 1.0)];
        let b = vec![series("a", &[2, 3], 2.0), series("b", &[5], 2.0)];
        let want = merge_series(vec![a.clone(), b.clone()]);
        // Decoded and decoded, chunks and chunks, decoded and chunks: one answer.
        for (x, y) in [
            (
                Box::new(VecStream::new(a.clone())) as Box<dyn SeriesStream>,
                Box::new(VecStream::new(b.clone())) as Box<dyn SeriesStream>,
            ),
            (Box::new(Chunked(a.clone())), Box::new(Chunked(b.clone()))),
            (
                Box::new(VecStream::new(a.clone())),
                Box::new(Chunked(b.clone())),
            ),
        ] {
            let got = collect_stream(merge_streams(vec![x, y], 0, 100), 0, 100).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_merge_of_many_series_comes_in_full_batches() {
        let a: Vec<Series> = (0..3000)
            .map(|i| series(&format!("m{i:05}"), &[i], 1.0))
            .collect();
        let b: Vec<Series> = (0..3000)
            .step_by(2)
            .map(|i| series(&format!("m{i:05}"), &[i], 2.0))
            .collect();
        let mut s = merge_streams(
            vec![Box::new(VecStream::new(a)), Box::new(VecStream::new(b))],
            0,
            10_000,
        );
        let mut n = 0;
        while let Some(batch) = s.next_batch().unwrap() {
            assert!(batch.len() <= BATCH_SERIES);
            n += batch.len();
        }
        assert_eq!(n, 3000);
    }
}
