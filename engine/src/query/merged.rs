//! Several sources read as one: a receiver's head and the blocks it has cut, which may hold
//! the same series (and, for a moment after a cut, the same samples).

use std::sync::Arc;

use super::{Queryable, SelectHints, Series, merge_samples};
use crate::chunk::HistogramBatch;
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
