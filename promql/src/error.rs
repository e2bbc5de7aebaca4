//! Errors a query can end with, each with the class Prometheus's API sorts it in.

use gauntlet_engine::error::ErrorClass;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromqlError {
    /// The query does not parse or is semantically invalid; the caller must fix the query
    /// (`bad_data`).
    #[error("{0}")]
    Parse(String),
    /// The query is valid but cannot be evaluated over this data, e.g. duplicate series
    /// after label changes (`execution`).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples at once than `max_samples` allows; narrow it
    /// (`execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran past the engine's timeout (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The caller gave up on the query (`canceled`).
    #[error("query was canceled")]
    Canceled,
    /// The storage failed to answer a selection; its class is the storage error's.
    #[error(transparent)]
    Storage(#[from] gauntlet_engine::Error),
}

impl PromqlError {
    /// What the error means for whoever sent the query; a storage failure keeps its own class
    /// (a store limit is `Execution`, an unreachable store `Unavailable`).
    pub fn class(&self) -> ErrorClass {
        match self {
            PromqlError::Parse(_) => ErrorClass::BadData,
            PromqlError::Execution(_) | PromqlError::TooManySamples(_) => ErrorClass::Execution,
            PromqlError::Timeout(_) => ErrorClass::Timeout,
            PromqlError::Canceled => ErrorClass::Canceled,
            PromqlError::Storage(e) => e.class(),
        }
    }
}
