//! What the HTTP API reads from: in-process blocks (`gauntlet all`) or the querier's fan-out
//! over StoreAPI endpoints (`gauntlet query`), behind one per-request interface.

pub mod cmd;
pub mod dns;
pub mod endpoints;
pub mod exemplars;
pub mod exemplars_proxy;
pub mod fanout;
pub mod file_watch;
pub mod metadata;
pub mod metadata_proxy;
pub mod proxy;
pub mod query_api;
pub mod rules;
pub mod rules_proxy;
mod series_merge;
pub mod series_wire;
pub mod shard;
pub mod store;
pub mod targets;
pub mod targets_proxy;
pub mod tenancy;

use std::sync::Arc;

use gauntlet_engine::query::Queryable;
use gauntlet_engine::store::ShardInfo;

/// Per-request read options: Thanos Query's extra HTTP parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Deduplicate replicas along the replica labels (`dedup`, default true).
    pub dedup: bool,
    /// Replica labels for this request (`replicaLabels[]`); `None` uses the configured ones.
    pub replica_labels: Option<Vec<String>>,
    /// Whether failing sources become warnings (true) or fail the request (false).
    pub partial_response: bool,
    /// Coarsest downsampling resolution accepted, ms (`max_source_resolution`); 0 = raw.
    pub max_resolution_ms: i64,
    /// Vertical sharding (`shard_info`): only the series of this shard are read.
    pub shard: Option<ShardInfo>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            dedup: true,
            replica_labels: None,
            partial_response: true,
            max_resolution_ms: 0,
            shard: None,
        }
    }
}

/// A [`Queryable`] for one request that also collects the warnings (partial responses) met
/// while reading.
pub trait ReadView: Queryable {
    /// Warnings gathered so far, in the order they happened.
    fn warnings(&self) -> Vec<String>;
}

/// Something the HTTP API can open a per-request [`ReadView`] over.
pub trait Source: Send + Sync + 'static {
    /// A view for one request with `opts`.
    fn view(&self, opts: &ReadOptions) -> Result<Arc<dyn ReadView>, gauntlet_engine::Error>;
}

/// How often async waits look at a request's cancellation token.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Resolves once `cancel` ends (the client left or the deadline passed), with why: raced
/// against a fan-out so an abandoned request drops its endpoint streams, which stops the
/// stores sending.
pub async fn interrupted(
    cancel: &gauntlet_engine::query::Cancel,
) -> gauntlet_engine::query::Interrupted {
    loop {
        if let Some(why) = cancel.interrupted() {
            return why;
        }
        tokio::time::sleep(CANCEL_POLL).await;
    }
}
