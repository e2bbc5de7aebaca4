//! The in-process source of `gauntlet all`: the bucket store read directly, without a gRPC
//! hop.

use std::sync::Arc;

use gauntlet_engine::Result;
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{Queryable, SelectHints, Series, SeriesStream};
use gauntlet_engine::store::BucketStore;

use super::{ReadOptions, ReadView, Source};

/// A bucket store as the HTTP API's source.
#[derive(Debug, Clone)]
pub struct StoreSource(pub Arc<BucketStore>);

impl Source for StoreSource {
    fn view(&self, opts: &ReadOptions) -> Result<Arc<dyn ReadView>> {
        let view: Arc<dyn ReadView> = Arc::new(StoreView {
            store: self.0.clone(),
            max_resolution_ms: opts.max_resolution_ms,
        });
        Ok(super::shard::ShardView::wrap(view, opts.shard.as_ref()))
    }
}

/// One request's view of the bucket store: reads at up to `max_source_resolution`.
#[derive(Debug, Clone)]
pub struct StoreView {
    store: Arc<BucketStore>,
    max_resolution_ms: i64,
}

impl Queryable for StoreView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        self.store
            .select_at_resolution(matchers, mint, maxt, hints, self.max_resolution_ms)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Box<dyn SeriesStream + 'a>> {
        self.store
            .select_stream_at_resolution(matchers, mint, maxt, hints, self.max_resolution_ms)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        Queryable::label_names(&*self.store, matchers, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        Queryable::label_values(&*self.store, name, matchers, mint, maxt)
    }
}

/// Reads from the local bucket have no partial failures: an error fails the request.
impl ReadView for StoreView {
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}
