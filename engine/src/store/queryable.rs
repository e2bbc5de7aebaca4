//! [`Queryable`] over the bucket store, so PromQL runs over bucket blocks in-process: the
//! store's stream of series batches ([`BucketStore::series_stream`]) is decoded batch by batch
//! into sample batches trimmed to the range.

use super::labels::LabelsQuery;
use super::series::SeriesQuery;
use super::{BucketStore, StoreError};
use crate::chunk::{Encoding, SampleBatch, decode_xor_into};
use crate::error::{Error, Result};
use crate::labels::Matcher;
use crate::query::{Queryable, SelectHints, Series};

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Index(e) => Error::Index(e),
            StoreError::Block(e) => Error::Block(e),
            other => Error::InvalidInput(other.to_string()),
        }
    }
}

impl BucketStore {
    /// Runs a future on the store's runtime from a synchronous caller (a blocking thread).
    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

impl Queryable for BucketStore {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        let q = SeriesQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
            abort_on_error: true,
            ..SeriesQuery::default()
        };
        let mut out = Vec::new();
        self.block_on(async {
            let mut stream = self.series_stream(&q).await?;
            while let Some(batch) = stream.next_batch().await? {
                for i in 0..batch.len() {
                    let mut samples = SampleBatch::new();
                    for c in batch.chunks(i) {
                        if c.encoding != Encoding::Xor as u8 {
                            return Err(Error::InvalidInput(format!(
                                "series {:?}: chunk encoding {} is not decoded by PromQL",
                                batch.series(i).labels,
                                c.encoding
                            )));
                        }
                        decode_xor_into(&c.data, &mut samples).map_err(|e| {
                            Error::InvalidInput(format!("series {:?}: {e}", batch.series(i).labels))
                        })?;
                    }
                    samples.truncate_to_range(mint, maxt);
                    if !samples.is_empty() {
                        out.push(Series {
                            labels: batch.series(i).labels,
                            samples,
                        });
                    }
                }
            }
            Ok::<(), Error>(())
        })?;
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let q = LabelsQuery {
            min_time: mint,
            max_time: maxt,
            matchers: matchers.to_vec(),
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
            ..LabelsQuery::default()
        };
        Ok(self.block_on(BucketStore::label_values(self, name, &q))?)
    }
}
