//! The engine's umbrella error: each concern has its own error enum, converted into this one at
//! the boundaries where several meet (opening a block, reading a series across files, a query
//! over a store or remote endpoints). Each error keeps its kind across those boundaries, and
//! [`Error::class`] says what it means for whoever sent the request.

use std::path::PathBuf;

use crate::block::BlockError;
use crate::chunk::ChunkError;
use crate::index::IndexError;
use crate::store::StoreError;

/// Any error the engine reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The index file is unreadable or corrupt; the block cannot be served.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A block file other than the index (meta.json, chunk segments, tombstones) is unreadable.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A chunk's payload does not decode; names the block directory and chunk reference.
    #[error("{dir}: chunk {chunk_ref:#x} of series {series_ref}: {source}")]
    Chunk {
        /// The block directory.
        dir: PathBuf,
        /// The series whose chunk failed (index ref).
        series_ref: u32,
        /// The chunk reference (segment << 32 | offset).
        chunk_ref: u64,
        /// What the decoder found.
        source: ChunkError,
    },
    /// The input to a writer breaks an ordering or range rule; the message says which.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An I/O error outside any single format's reader.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bucket store failed a request: one of its limits, not ready yet, the bucket out of
    /// reach, a corrupt block. The store error says which.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A remote StoreAPI endpoint failed a request, or answered what does not decode.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The WAL could not be written or read; the error names the file. A write that failed
    /// is worth retrying once the disk has room again.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// An engine core stopped before answering: the process is shutting down. Retry against
    /// another replica or after the restart.
    #[error(transparent)]
    Canceled(#[from] crate::shard::Canceled),
    /// The request needed more memory than the process's budget (`--memory.limit`) had left;
    /// retry once work in flight has ended.
    #[error(transparent)]
    OverBudget(#[from] crate::budget::OverBudget),
    /// The request's client went away or its deadline passed; its work was stopped. Nobody
    /// waits for an answer (or the client is told it timed out).
    #[error(transparent)]
    Interrupted(#[from] crate::query::Interrupted),
}

impl Error {
    /// What the error means for whoever sent the request.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Store(e) => e.class(),
            Error::Remote(e) => e.kind.class(),
            Error::Wal(_) | Error::Canceled(_) | Error::OverBudget(_) => ErrorClass::Unavailable,
            Error::Interrupted(crate::query::Interrupted::Canceled) => ErrorClass::Canceled,
            Error::Interrupted(crate::query::Interrupted::DeadlineExceeded(_)) => {
                ErrorClass::Timeout
            }
            Error::Index(_)
            | Error::Block(_)
            | Error::Chunk { .. }
            | Error::InvalidInput(_)
            | Error::Io { .. } => ErrorClass::Internal,
        }
    }
}

/// What an error means for whoever sent the request, as Prometheus's API sorts its errors:
/// servers map it to their status codes (HTTP, gRPC) and error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request is malformed; the client must change it (Prometheus's `bad_data`).
    BadData,
    /// The request is well formed but cannot be answered as asked: over a limit, or the data
    /// breaks one of the query's rules (`execution`). Narrowing the request helps.
    Execution,
    /// The request ran past its deadline (`timeout`); retrying may help.
    Timeout,
    /// The caller gave up on the request (`canceled`).
    Canceled,
    /// A store, endpoint or bucket that holds the data cannot be reached now (`unavailable`);
    /// retrying later may help.
    Unavailable,
    /// Anything else: corrupt data, a fault of the server (`internal`).
    Internal,
}

/// A remote StoreAPI endpoint's failure: which endpoint, what kind, and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {message}")]
pub struct RemoteError {
    /// The endpoint's address (`host:port`).
    pub endpoint: String,
    /// What the failure means for the request.
    pub kind: RemoteErrorKind,
    /// The endpoint's message, or what went wrong reading its answer.
    pub message: String,
}

/// Kinds of [`RemoteError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The endpoint could not be reached, or is not ready; another replica may answer.
    Unavailable,
    /// The endpoint did not answer within the time allowed.
    Timeout,
    /// The endpoint refused the request as over one of its limits.
    LimitExceeded,
    /// The endpoint refused the request as malformed.
    InvalidRequest,
    /// The endpoint failed, or its answer does not decode.
    Internal,
}

impl RemoteErrorKind {
    /// The class of a request that failed this way.
    pub fn class(self) -> ErrorClass {
        match self {
            RemoteErrorKind::Unavailable => ErrorClass::Unavailable,
            RemoteErrorKind::Timeout => ErrorClass::Timeout,
            RemoteErrorKind::LimitExceeded => ErrorClass::Execution,
            RemoteErrorKind::InvalidRequest => ErrorClass::BadData,
            RemoteErrorKind::Internal => ErrorClass::Internal,
        }
    }
}

/// Result with the engine's umbrella error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Most bytes of one piece of user input (a pattern, a name, a literal) an error message
/// repeats.
pub const ECHO_BYTES: usize = 200;

/// Most bytes of an error message sent to a client. A gRPC status travels in a header, which
/// clients refuse past a few KiB; an HTTP error body has no such limit, but a message
/// repeating a megabyte of the request helps no one.
pub const MESSAGE_BYTES: usize = 1024;

/// `text` as an error message may repeat it, at most `max` bytes (and a note): whole when it
/// fits, else its start and its end around how much was left out, so both what the message
/// is about and how it ends stay readable.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (max - head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}…({} bytes)…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    ))
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn long_text_keeps_its_start_and_end() {
        assert_eq!(clip("short", 10), "short");
        let long = format!("start{}end", "x".repeat(10_000));
        let c = clip(&long, 100);
        assert!(c.starts_with("start") && c.ends_with("end"), "{c}");
        assert!(c.len() < 130, "{}", c.len());
        assert!(c.contains("(9908 bytes)"), "{c}");
        // Never inside a character.
        let wide = "é".repeat(1000);
        for max in [1, 2, 3, 99, 100, 101] {
            let c = clip(&wide, max);
            assert!(c.starts_with('é') || c.starts_with('…'), "{c}");
        }
    }
}
