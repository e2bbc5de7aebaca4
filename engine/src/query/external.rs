//! A source's external labels added to every series of its stream, the stream kept in label
//! order without holding it whole.
//!
//! Adding the same label to two label sets keeps their order, with one exception: when one
//! set is a proper prefix of the other and the added name sorts after the label where the
//! longer one goes on (`{a="1"}` before `{a="1",b="2"}`, but `{a="1",c="x"}` after
//! `{a="1",b="2",c="x"}`). The sets that start with a given set follow it at once in label
//! order, so the stream is re-sorted one such run at a time: a run is a series and the ones
//! after it that it is a prefix of, nearly always the series alone.

use std::collections::VecDeque;

use super::{BATCH_SERIES, SeriesStream, StreamSeries};
use crate::error::Result;
use crate::labels::Labels;

/// `stream` with `external` added to every series' labels, in label order. The caller makes
/// sure no series carries a label named as an external one (an external label would replace
/// it, which can reorder series arbitrarily): see [`external_names_clash`].
pub fn with_external_labels<'a>(
    stream: Box<dyn SeriesStream + 'a>,
    external: Labels,
) -> Box<dyn SeriesStream + 'a> {
    if external.is_empty() {
        return stream;
    }
    Box::new(WithExternal {
        inner: stream,
        external,
        run: Vec::new(),
        ready: VecDeque::new(),
        done: false,
    })
}

/// Whether any of `external`'s names is one `has_name` says the source's series carry: then
/// [`with_external_labels`] cannot keep the order, and the caller sorts the selection whole.
pub fn external_names_clash(external: &Labels, has_name: impl Fn(&str) -> bool) -> bool {
    external.iter().any(|l| has_name(&l.name))
}

struct WithExternal<'a> {
    inner: Box<dyn SeriesStream + 'a>,
    external: Labels,
    /// The run being gathered: its first series, then those it is a prefix of.
    run: Vec<StreamSeries>,
    /// Series relabelled and in order, to hand out.
    ready: VecDeque<StreamSeries>,
    done: bool,
}

fn is_prefix(a: &Labels, b: &Labels) -> bool {
    a.len() <= b.len() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

impl WithExternal<'_> {
    fn close_run(&mut self) {
        let mut run = std::mem::take(&mut self.run);
        for s in &mut run {
            s.labels = s.labels.with_external(&self.external);
        }
        if run.len() > 1 {
            run.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        self.ready.extend(run);
    }
}

impl SeriesStream for WithExternal<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<StreamSeries>>> {
        while self.ready.len() < BATCH_SERIES && !self.done {
            match self.inner.next_batch()? {
                None => {
                    self.done = true;
                    self.close_run();
                }
                Some(batch) => {
                    for s in batch {
                        if self
                            .run
                            .first()
                            .is_some_and(|f| !is_prefix(&f.labels, &s.labels))
                        {
                            self.close_run();
                        }
                        self.run.push(s);
                    }
                }
            }
        }
        let n = self.ready.len().min(BATCH_SERIES);
        Ok((n > 0).then(|| self.ready.drain(..n).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::SampleBatch;
    use crate::query::Series;
    use crate::query::{SeriesData, VecStream};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn drain(mut s: Box<dyn SeriesStream + '_>) -> Vec<Labels> {
        let mut out = Vec::new();
        while let Some(b) = s.next_batch().unwrap() {
            out.extend(b.into_iter().map(|s| s.labels));
        }
        out
    }

    #[test]
    fn order_holds_where_a_prefix_set_would_move_after_its_extension() {
        let sets = [
            labels(&[("__name__", "up"), ("a", "1")]),
            labels(&[("__name__", "up"), ("a", "1"), ("b", "2")]),
            labels(&[("__name__", "up"), ("a", "1"), ("b", "2"), ("d", "4")]),
            labels(&[("__name__", "up"), ("a", "2")]),
            labels(&[("__name__", "zz")]),
        ];
        let series: Vec<Series> = sets
            .iter()
            .map(|l| Series::floats(l.clone(), SampleBatch::new()))
            .collect();
        let external = labels(&[("c", "x")]);
        let got = drain(with_external_labels(
            Box::new(VecStream::new(series)),
            external.clone(),
        ));
        let mut want: Vec<Labels> = sets.iter().map(|l| l.with_external(&external)).collect();
        want.sort();
        assert_eq!(got, want);
        // The prefix set did move: the test covers the case.
        assert_ne!(want[1], sets[1].with_external(&external));
    }

    #[test]
    fn many_series_come_out_in_batches_with_their_data() {
        let series: Vec<Series> = (0..3000)
            .map(|i| {
                let mut b = SampleBatch::new();
                b.push(i, i as f64);
                Series::floats(labels(&[("i", &format!("{i:05}"))]), b)
            })
            .collect();
        let mut s =
            with_external_labels(Box::new(VecStream::new(series)), labels(&[("tenant", "t")]));
        let mut n = 0;
        while let Some(b) = s.next_batch().unwrap() {
            assert!(b.len() <= BATCH_SERIES);
            for x in b {
                assert_eq!(x.labels.get("tenant"), Some("t"));
                let SeriesData::Decoded(d) = x.data else {
                    panic!("decoded data expected");
                };
                assert_eq!(d.ts, vec![n]);
                n += 1;
            }
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn a_clash_is_told_by_the_names_the_source_has() {
        let external = labels(&[("replica", "a"), ("tenant", "t")]);
        assert!(external_names_clash(&external, |n| n == "tenant"));
        assert!(!external_names_clash(&external, |n| n == "job"));
    }
}
