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
                if !in_range(&b.meta, q) {
                    continue;
                }
                names.extend(b.header.label_names());
                names.extend(b.ext_labels.iter().map(|l| l.name.to_string()));
            }
            for b in self.parquet_blocks() {
                if !in_range(&b.meta, q) {
                    continue;
                }
                for s in &b.shards {
                    names.extend(s.label_names().map(str::to_string));
                }
                names.extend(b.ext_labels.iter().map(|l| l.name.to_string()));
            }
        } else {
            let mut seen = Distinct::default();
            let mut stream = self.series_stream(&Self::series_query(q)).await?;
            while let Some(b) = stream.next_batch().await? {
                for i in 0..b.len() {
                    for (n, _) in b.labels(i) {
                        seen.add(n);
                    }
                }
            }
            names = seen.into_strings().collect();
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
                if !in_range(&b.meta, q) {
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
            for b in self.parquet_blocks() {
                if !in_range(&b.meta, q) {
                    continue;
                }
                match b.ext_labels.get(name) {
                    Some(v) => {
                        values.insert(v.to_string());
                    }
                    None => {
                        for s in &b.shards {
                            values.extend(s.label_values(&self.bucket, name, &[]).await?);
                        }
                    }
                }
            }
        } else {
            // The cheap check first: skip the series read when no block can match.
            let any = self
                .blocks()
                .iter()
                .any(|b| block_matchers(b, &q.matchers).is_some())
                || self.parquet_blocks().iter().any(|b| {
                    crate::labels::external_matchers(&b.ext_labels, &q.matchers).is_some()
                });
            if any {
                // Streamed batch by batch, each value kept once: a selection of millions of
                // series is never held whole, and a value repeated across them costs a lookup.
                let mut seen = Distinct::default();
                let mut stream = self.series_stream(&Self::series_query(q)).await?;
                while let Some(b) = stream.next_batch().await? {
                    for i in 0..b.len() {
                        if let Some((_, v)) = b.labels(i).find(|(n, _)| *n == name.as_bytes()) {
                            seen.add(v);
                        }
                    }
                }
                // Collected whole, the set is built from the sorted values at once.
                values = seen.into_strings().collect();
            }
        }
        Ok(finish(values, &[], q.limit))
    }
}

/// Distinct byte strings, each stored once however often it is added.
#[derive(Default)]
struct Distinct(hashbrown::HashTable<Box<[u8]>>);

impl Distinct {
    fn add(&mut self, v: &[u8]) {
        let hash = |b: &[u8]| xxhash_rust::xxh64::xxh64(b, 0);
        let h = hash(v);
        if self.0.find(h, |e| **e == *v).is_none() {
            self.0.insert_unique(h, v.into(), |e| hash(e));
        }
    }

    fn into_strings(self) -> impl Iterator<Item = String> {
        self.0
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

/// Whether a block's range meets the query's (the block's end is exclusive).
fn in_range(meta: &crate::block::BlockMeta, q: &LabelsQuery) -> bool {
    meta.min_time <= q.max_time && meta.max_time > q.min_time
}

fn finish(set: BTreeSet<String>, without: &[String], limit: u64) -> Vec<String> {
    let it = set.into_iter().filter(|n| !without.contains(n));
    if limit > 0 {
        it.take(limit as usize).collect()
    } else {
        it.collect()
    }
}
