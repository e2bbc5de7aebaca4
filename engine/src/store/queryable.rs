//! [`Queryable`] over the bucket store, so PromQL runs over bucket blocks in-process: the
//! store's stream of series batches ([`BucketStore::series_stream`]) is handed to PromQL batch
//! by batch, raw chunks left for its workers to decode (raw blocks here; `downsampled.rs`
//! reads at a coarser resolution and adapts the stream for both).

use super::BucketStore;
use super::labels::LabelsQuery;
use crate::error::Result;
use crate::labels::Matcher;
use crate::query::{Queryable, SelectHints, Series, SeriesStream};

impl BucketStore {
    /// Runs a future on the store's runtime from a synchronous caller (a blocking thread).
    pub(super) fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

impl Queryable for BucketStore {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        self.select_at_resolution(matchers, mint, maxt, hints, 0)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        self.select_stream_at_resolution(matchers, mint, maxt, hints, 0)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let q = LabelsQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            // PromQL's label APIs answer for whole blocks, as Prometheus does.
            whole_blocks: true,
            ..LabelsQuery::default()
        };
        Ok(self.block_on(BucketStore::label_names(self, &q))?)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let q = LabelsQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            // PromQL's label APIs answer for whole blocks, as Prometheus does.
            whole_blocks: true,
            ..LabelsQuery::default()
        };
        Ok(self.block_on(BucketStore::label_values(self, name, &q))?)
    }
}
