//! Errors a query can end with, each mapped to Prometheus's API `errorType`.

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromqlError {
    /// The query does not parse or is semantically invalid; the caller must fix the query
    /// (HTTP 400, `bad_data`).
    #[error("{0}")]
    Parse(String),
    /// The query is valid but cannot be evaluated over this data, e.g. duplicate series
    /// after label changes (HTTP 422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples at once than `max_samples` allows; narrow it
    /// (HTTP 422, `execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran past the engine's timeout (HTTP 503, `timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The caller gave up on the query (`canceled`).
    #[error("query was canceled")]
    Canceled,
    /// The storage failed to answer a selection (HTTP 422 or 500, `internal`).
    #[error(transparent)]
    Storage(#[from] crate::Error),
}

impl PromqlError {
    /// Prometheus's `errorType` string for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            PromqlError::Parse(_) => "bad_data",
            PromqlError::Execution(_) | PromqlError::TooManySamples(_) => "execution",
            PromqlError::Timeout(_) => "timeout",
            PromqlError::Canceled => "canceled",
            PromqlError::Storage(_) => "internal",
        }
    }
}
