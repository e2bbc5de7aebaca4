//! The TSDB index (format v2): symbols, series, postings, postings offset table, TOC; and the
//! postings kernels that combine series lists.
//!
//! The layout is Prometheus's (`tsdb/docs/format/index.md`; see `FORMAT.md` beside this file
//! for the points a reader must get right). [`IndexWriter`] writes what Prometheus 2.42 writes,
//! legacy label indices included, so every Prometheus and Thanos version reads our blocks;
//! [`IndexReader`] reads v1 and v2 files with or without the legacy sections.

pub mod error;
pub mod postings;
pub mod reader;
pub mod select;
mod spool;
mod symbols;
pub mod toc;
pub mod writer;

#[cfg(test)]
mod tests;

pub use error::IndexError;
pub use reader::IndexReader;
pub(crate) use reader::series_entry;
pub use select::{PostingsPlan, plan_postings, postings_for_matchers};
pub use toc::Toc;
pub use writer::IndexWriter;

/// Chunk metadata from a series entry; times in ms, max inclusive; ref = segment<<32 | offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Timestamp of the chunk's first sample, in ms.
    pub min_time: i64,
    /// Timestamp of the chunk's last sample, in ms (inclusive).
    pub max_time: i64,
    /// Where the chunk lives: segment file index (0-based) in the upper 32 bits, byte offset in
    /// the lower 32.
    pub chunk_ref: u64,
}
