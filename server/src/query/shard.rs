//! Vertical sharding for sources that read their series in process (`gauntlet all`'s blocks
//! and heads, the store's PromQL API): a request with `shard_info` sees only the series of its
//! shard, by the same hash the StoreAPI servers use ([`ShardInfo::matches`]). The querier's
//! fan-out passes the shard to its endpoints instead (see `fanout`).

use std::sync::Arc;

use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{Queryable, SelectHints, Series, SeriesStream, StreamSeries};
use gauntlet_engine::store::ShardInfo;

use super::ReadView;

/// `inner` with only the series of one shard.
pub struct ShardView {
    inner: Arc<dyn ReadView>,
    shard: ShardInfo,
}

impl std::fmt::Debug for ShardView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardView")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl ShardView {
    /// `inner` seen through `shard`, or `inner` itself when there is no shard.
    pub fn wrap(inner: Arc<dyn ReadView>, shard: Option<&ShardInfo>) -> Arc<dyn ReadView> {
        match shard {
            Some(s) => Arc::new(ShardView {
                inner,
                shard: s.clone(),
            }),
            None => inner,
        }
    }
}

/// The hints without an aggregation's grouping: the hash needs every label of a series, so
/// the source must not leave any out.
fn whole(hints: &SelectHints) -> SelectHints {
    SelectHints {
        grouping: None,
        ..hints.clone()
    }
}

/// A stream with only the series of a shard, hashed without the labels in `except` (the
/// replica labels a StoreAPI server takes off what it sends); batches left empty are skipped.
pub(crate) struct ShardStream<'a> {
    inner: Box<dyn SeriesStream + 'a>,
    shard: ShardInfo,
    except: Vec<String>,
}

impl<'a> ShardStream<'a> {
    /// `inner` with only the series of `shard`, or `inner` itself when there is no shard.
    pub(crate) fn wrap(
        inner: Box<dyn SeriesStream + 'a>,
        shard: Option<ShardInfo>,
        except: Vec<String>,
    ) -> Box<dyn SeriesStream + 'a> {
        match shard {
            Some(shard) => Box::new(ShardStream {
                inner,
                shard,
                except,
            }),
            None => inner,
        }
    }
}

impl SeriesStream for ShardStream<'_> {
    fn next_batch(&mut self) -> gauntlet_engine::Result<Option<Vec<StreamSeries>>> {
        while let Some(mut batch) = self.inner.next_batch()? {
            batch.retain(|s| self.shard.matches_except(&s.labels, &self.except));
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }
}

impl Queryable for ShardView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        let mut series = self.inner.select(matchers, mint, maxt, &whole(hints))?;
        series.retain(|s| self.shard.matches(&s.labels));
        Ok(series)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'a>> {
        Ok(ShardStream::wrap(
            self.inner
                .select_stream(matchers, mint, maxt, &whole(hints))?,
            Some(self.shard.clone()),
            Vec::new(),
        ))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.inner.label_names(matchers, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.inner.label_values(name, matchers, mint, maxt)
    }
}

impl ReadView for ShardView {
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }
}

#[cfg(test)]
mod tests {
    use gauntlet_engine::chunk::{HistogramBatch, SampleBatch};
    use gauntlet_engine::labels::{Labels, MatchType};
    use gauntlet_engine::query::MemSeries;

    use super::*;

    /// In-memory series as a request's view.
    #[derive(Debug)]
    struct Mem(MemSeries);

    impl Queryable for Mem {
        fn select(
            &self,
            matchers: &[Matcher],
            mint: i64,
            maxt: i64,
            hints: &SelectHints,
        ) -> gauntlet_engine::Result<Vec<Series>> {
            assert!(hints.grouping.is_none(), "a shard needs whole label sets");
            self.0.select(matchers, mint, maxt, hints)
        }

        fn label_names(
            &self,
            matchers: &[Matcher],
            mint: i64,
            maxt: i64,
        ) -> gauntlet_engine::Result<Vec<String>> {
            self.0.label_names(matchers, mint, maxt)
        }

        fn label_values(
            &self,
            name: &str,
            matchers: &[Matcher],
            mint: i64,
            maxt: i64,
        ) -> gauntlet_engine::Result<Vec<String>> {
            self.0.label_values(name, matchers, mint, maxt)
        }
    }

    impl ReadView for Mem {
        fn warnings(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn source() -> Arc<dyn ReadView> {
        let series = (0..30)
            .map(|i| {
                let mut samples = SampleBatch::new();
                samples.push(1_000, f64::from(i));
                Series {
                    labels: Labels::from_pairs([
                        ("__name__".to_string(), "up".to_string()),
                        ("i".to_string(), i.to_string()),
                    ]),
                    samples,
                    histograms: HistogramBatch::new(),
                }
            })
            .collect();
        Arc::new(Mem(MemSeries::new(series)))
    }

    fn names(series: impl IntoIterator<Item = Labels>) -> Vec<String> {
        let mut v: Vec<String> = series.into_iter().map(|l| l.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn each_series_is_read_by_exactly_one_shard() {
        let up = [Matcher::new(MatchType::Equal, "__name__", "up").unwrap()];
        let hints = SelectHints {
            grouping: Some(gauntlet_engine::query::Grouping::default_by()),
            ..SelectHints::default()
        };
        let whole = names(
            source()
                .select(&up, 0, 2_000, &SelectHints::default())
                .unwrap()
                .into_iter()
                .map(|s| s.labels),
        );
        let mut selected = Vec::new();
        let mut streamed = Vec::new();
        for index in 0..3 {
            let shard = ShardInfo {
                index,
                total: 3,
                by: true,
                labels: vec!["i".into()],
            };
            let view = ShardView::wrap(source(), Some(&shard));
            let got = view.select(&up, 0, 2_000, &hints).unwrap();
            assert!(!got.is_empty() && got.len() < whole.len());
            assert!(got.iter().all(|s| shard.matches(&s.labels)));
            selected.extend(got.into_iter().map(|s| s.labels));
            let mut stream = view.select_stream(&up, 0, 2_000, &hints).unwrap();
            while let Some(batch) = stream.next_batch().unwrap() {
                streamed.extend(batch.into_iter().map(|s| s.labels));
            }
        }
        assert_eq!(names(selected), whole);
        assert_eq!(names(streamed), whole);
    }
}
