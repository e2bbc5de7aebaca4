//! The engine's umbrella error: each concern has its own error enum, converted into this one at
//! the boundaries where several meet (opening a block, reading a series across files).

use std::path::PathBuf;

use crate::block::BlockError;
use crate::chunk::ChunkError;
use crate::index::IndexError;

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
}

/// Result with the engine's umbrella error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
