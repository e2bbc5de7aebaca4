//! Load generators: remote write ([`remote_write`]) and PromQL queries ([`query`]), over
//! keep-alive HTTP/1.1 connections ([`http`]), with latency and process figures ([`stats`]).

pub mod diff;
pub mod http;
pub mod query;
pub mod remote_write;
pub mod stats;

/// Why a load run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The URL is not `http://host:port/path`; only plain HTTP is supported.
    #[error("bad URL {0:?}: expected http://host[:port]/path")]
    BadUrl(String),
    /// The query file has a malformed line; the message names the line.
    #[error("query file line {line}: {msg}")]
    BadQueryLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Connecting or talking to the server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A timestamp could not be moved in place.
    #[error(transparent)]
    Shift(#[from] crate::remote_write::ShiftError),
    /// Bad option values; the message names the option.
    #[error("invalid option: {0}")]
    Invalid(String),
}
