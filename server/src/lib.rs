//! Gauntlet's roles over the engine: the command line of each, the gRPC and HTTP servers and
//! the background loops. The `gauntlet` binary (`main.rs`) dispatches to them; as a library they
//! are what tests and fuzz targets drive in-process (the HTTP API's router over any
//! [`query::Source`]).

pub mod all;
pub mod blocks;
pub mod compact;
pub mod compact_progress;
pub mod frontend;
pub mod grpc;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod query;
pub mod receive;
pub mod rule;
pub mod sidecar;
pub mod store;
pub mod tls;
pub mod tools;

/// The time now, ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
