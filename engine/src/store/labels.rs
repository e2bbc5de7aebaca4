//! LabelNames and LabelValues over the bucket: from the index-headers alone when no matcher is
//! given, else from the series the matchers select.

use std::collections::BTreeSet;

use super::series::{SeriesQuery, block_matchers};
use super::{BucketStore, StoreError};
use crate::labels::Matcher;

/// A LabelNames or LabelValues request in engine terms.
#[derive(Debug, Clone, Default)]
pub struct LabelsQuery {
    /// Start, ms inclusive.
    pub min_time: i64,
    /// End, ms inclusive.
    pub max_time: i64,
    /// Restrict to series matching all of these (none = every series).
    pub matchers: Vec<Matcher>,
    /// Names left out of the answer.
    pub without_replica_labels: Vec<String>,
    /// At most this many entries (0 = all).
    pub limit: u64,
    /// Count every series of the blocks overlapping the range, as Prometheus's label APIs do;
    /// otherwise only series with a chunk in range, as Thanos's store does.
    pub whole_blocks: bool,
}

impl BucketStore {
    fn check(&self, q: &LabelsQuery) -> Result<(), StoreError> {
        if !self.is_ready() {
            return Err(StoreError::NotReady);
        }
        if q.min_time > q.max_time {
            return Err(StoreError::InvalidRequest(format!(
                "start {} is after end {}",
                q.min_time, q.max_time
            )));
        }
        Ok(())
    }

    /// `q` cut to the store's time window, as Series requests are.
    fn within_window(&self, q: &LabelsQuery) -> LabelsQuery {
        let (min_time, max_time) = self.clamp_to_window(q.min_time, q.max_time);
        LabelsQuery {
            min_time,
            max_time,
            ..q.clone()
        }
    }

    fn series_query(q: &LabelsQuery) -> SeriesQuery {
        SeriesQuery {
            min_time: q.min_time,
            max_time: q.max_time,
            matchers: q.matchers.clone(),
            skip_chunks: true,
            without_replica_labels: q.without_replica_labels.clone(),
            every_resolution: true,
            whole_blocks: q.whole_blocks,
            ..SeriesQuery::default()
        }
    }

    /// Sorted label names (external label names included) of the blocks in range, or of the
    /// series matching `q.matchers`.
    pub async fn label_names(&self, q: &LabelsQuery) -> Result<Vec<String>, StoreError> {
        self.check(q)?;
        let q = &self.within_window(q);
        if q.min_time > q.max_time {
            return Ok(Vec::new());
        }
        let mut names = BTreeSet::new();
        if q.matchers.is_empty() {
            for b in self.blocks() {
                if b.meta.min_time > q.max_time || b.meta.max_time <= q.min_time {
                    continue;
                }
                names.extend(b.header.label_names());
                names.extend(b.ext_labels.iter().map(|l| l.name.to_string()));
            }
        } else {
            for s in self.series(&Self::series_query(q)).await?.series {
                names.extend(s.labels.iter().map(|l| l.name.to_string()));
            }
        }
        Ok(finish(names, &q.without_replica_labels, q.limit))
    }

    /// Sorted values of label `name` in the blocks in range, or over the series matching
    /// `q.matchers`; an external label's value stands for every series of its blocks.
    pub async fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<Vec<String>, StoreError> {
        self.check(q)?;
        let q = &self.within_window(q);
        if q.min_time > q.max_time {
            return Ok(Vec::new());
        }
        if name.is_empty() {
            return Err(StoreError::InvalidRequest("label name is empty".into()));
        }
        if q.without_replica_labels.iter().any(|n| n == name) {
            return Ok(Vec::new());
        }
        let mut values = BTreeSet::new();
        if q.matchers.is_empty() {
            for b in self.blocks() {
                if b.meta.min_time > q.max_time || b.meta.max_time <= q.min_time {
                    continue;
                }
                match b.ext_labels.get(name) {
                    Some(v) => {
                        values.insert(v.to_string());
                    }
                    None => {
                        let (b, n) = (b.clone(), name.to_string());
                        let got = self
                            .cores
                            .call(b.owner(), move |c| async move {
                                super::resolve::label_values(&c, &b, &n).await
                            })
                            .await
                            .map_err(|_| StoreError::Stopped)??;
                        values.extend(got);
                    }
                }
            }
        } else {
            // The cheap check first: skip the series read when no block can match.
            let any = self
                .blocks()
                .iter()
                .any(|b| block_matchers(b, &q.matchers).is_some());
            if any {
                for s in self.series(&Self::series_query(q)).await?.series {
                    if let Some(v) = s.labels.get(name) {
                        values.insert(v.to_string());
                    }
                }
            }
        }
        Ok(finish(values, &[], q.limit))
    }
}

fn finish(set: BTreeSet<String>, without: &[String], limit: u64) -> Vec<String> {
    let it = set.into_iter().filter(|n| !without.contains(n));
    if limit > 0 {
        it.take(limit as usize).collect()
    } else {
        it.collect()
    }
}
