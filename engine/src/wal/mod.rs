//! Prometheus's write-ahead log (`tsdb/wlog`), written and read byte for byte as Prometheus
//! 2.42 and 3.x do, so that `promtool tsdb dump` and Prometheus replay what Gauntlet writes and
//! Gauntlet replays what Prometheus wrote. The layout is in `docs/formats/wal.md`.
//!
//! This is the format layer only: segments of 32 KiB pages holding CRC-checked fragments of
//! records ([`WalWriter`], [`WalReader`], [`SegmentReader`]), the record encodings
//! ([`record`]), checkpoints ([`checkpoint()`]) and the repair of a torn tail ([`repair`]).
//! Which series and samples go into the log, and what replay does with them, is the head's.

mod checkpoint;
mod histogram_record;
mod reader;
pub mod record;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use checkpoint::{
    CheckpointStats, checkpoint, delete_checkpoints_before, delete_segments_before, last_checkpoint,
};
pub use reader::{SegmentReader, WalReader, repair};
pub use segment::{parse_segment_name, segment_name, segment_range};
pub use writer::{WalOptions, WalWriter};

/// Bytes in a page: no fragment crosses a page boundary.
pub const PAGE_SIZE: usize = 32 * 1024;

/// Bytes in a segment unless [`WalOptions::segment_size`] says otherwise (128 MiB).
pub const DEFAULT_SEGMENT_SIZE: usize = 128 << 20;

/// Bytes of a fragment header: type, length (2 bytes BE), CRC-32C of the data (4 bytes BE).
const HEADER_SIZE: usize = 7;

/// Fragment types, the low three bits of a fragment's first byte.
mod frag {
    /// The rest of the page is zeros.
    pub const PAGE_TERM: u8 = 0;
    /// A whole record.
    pub const FULL: u8 = 1;
    /// The first fragment of a record.
    pub const FIRST: u8 = 2;
    /// A fragment between the first and the last.
    pub const MIDDLE: u8 = 3;
    /// The last fragment of a record.
    pub const LAST: u8 = 4;
    /// Mask of the fragment type.
    pub const TYPE_MASK: u8 = 0x07;
    /// Set on every fragment of a snappy-compressed record.
    pub const SNAPPY: u8 = 0x08;
    /// Set on every fragment of a zstd-compressed record (Prometheus 2.48 and later).
    pub const ZSTD: u8 = 0x10;
}

/// What went wrong reading, writing or maintaining a WAL directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An OS call on a segment or directory failed (disk full, permissions, a file vanished).
    /// The caller may retry once the cause is fixed; a writer that failed mid-record should be
    /// reopened, which starts a fresh segment.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A segment holds a torn or damaged record: a fragment cut short by a crash, a CRC
    /// mismatch, fragments out of order, bytes after a page's end marker, a record that does
    /// not decompress. `offset` is the byte where the first record that cannot be read whole
    /// starts; every record before it is intact. For a segment of the log itself the caller
    /// calls [`repair`] with this error (it cuts the segment there and drops later segments,
    /// as Prometheus does) and replays again; corruption inside a checkpoint cannot be
    /// repaired.
    #[error("corrupt WAL segment {} at offset {offset}: {reason}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset in that file where the unreadable record starts.
        offset: u64,
        /// What was found there.
        reason: String,
    },
    /// A record is compressed with zstd (Prometheus 2.48+ run with
    /// `--storage.tsdb.wal-compression-type=zstd`), which Gauntlet does not read. Prometheus's
    /// default, snappy, is read; the WAL must be replayed by Prometheus or rewritten with snappy.
    #[error("WAL segment {} at offset {offset}: zstd-compressed record, which Gauntlet does not read", segment.display())]
    Zstd {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset in that file where the record starts.
        offset: u64,
    },
    /// The directory's layout is not a WAL's: segment numbers with a gap, a segment missing
    /// after the checkpoint, a `checkpoint.N` entry that is not a directory. Records were lost
    /// or the directory was edited by hand; the caller stops and reports it.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The directory or entry at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A caller's argument cannot be honoured: a segment size that is not a whole number of
    /// pages, a checkpoint range that skips segments after the last checkpoint, a repair
    /// asked for an error that does not name a segment of this log. Nothing was changed.
    #[error("{0}")]
    InvalidArgument(String),
}

impl WalError {
    /// An [`WalError::Io`] for `path`.
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { path, source }
    }
}
