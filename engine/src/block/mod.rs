//! Blocks: meta.json, chunk segments, tombstones, marker files; the block reader and writer,
//! chunk cutting, dump, inspect and verify.
//!
//! The formats are Prometheus's and Thanos's own, written down for Gauntlet in
//! `docs/formats/tsdb-block.md` (sections Layout, meta.json, Chunk segment files, Chunk
//! encoding bytes, Tombstones) and `docs/formats/compaction.md` (Marker files).

pub mod cut;
pub mod dump;
pub mod histogram_cut;
pub mod histogram_text;
pub mod inspect;
pub mod label_filter;
pub mod markers;
pub mod meta;
pub mod reader;
pub mod segment;
pub mod tombstones;
pub mod verify;
pub mod writer;

use std::path::PathBuf;

use crate::encoding::DecodeError;

pub use cut::{CutOptions, cut_chunks};
pub use histogram_cut::{
    CutHistogramChunk, HistogramChunkCutter, MIN_SAMPLES_PER_HISTOGRAM_CHUNK,
    TARGET_BYTES_PER_HISTOGRAM_CHUNK, cut_float_histogram_chunks, cut_histogram_chunks,
};
pub use label_filter::{LabelFilter, LabelFilterError};
pub use markers::{DeletionMark, NoCompactMark, NoDownsampleMark};
pub use meta::{
    BlockDesc, BlockMeta, BlockStats, Compaction, IndexStats, ObjectHash, Rewrite,
    ThanosDownsample, ThanosFile, ThanosMeta,
};
pub use reader::{Block, BlockSample, block_dirs};
pub use segment::{ChunkRef, RecordRead, SegmentReader, SegmentWriter, read_chunk_record};
pub use tombstones::{Interval, Tombstones, apply_deletions};
pub use writer::{BlockWriter, EncodedChunk, SeriesSamples, write_blocks};

/// Everything that can go wrong reading or writing the files of a block.
///
/// Each variant names the file; decoding errors also name the byte offset, so a log line is
/// enough to find the damage with a hex dump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// An OS-level read, write, sync or rename failed; retrying may help if the cause was
    /// transient (disk full, permissions), otherwise the block directory is unusable.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (meta.json or a marker) is not valid JSON or does not have the expected
    /// shape; the file is corrupt or was partially written.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// Where and how parsing failed.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file parsed but its content is inconsistent (e.g. `minTime > maxTime`).
    #[error("{}: invalid content: {reason}", path.display())]
    InvalidMeta {
        /// The JSON file.
        path: PathBuf,
        /// Which fields disagree, and how.
        reason: String,
    },
    /// The file does not start with the magic number of its format: it is not that kind of
    /// file, or its header is damaged.
    #[error("{}: bad magic {actual:#010x} at offset {offset} (expected {expected:#010x})", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Byte offset of the magic number in the file.
        offset: u64,
        /// The magic number of the format.
        expected: u32,
        /// The four bytes found instead, big-endian.
        actual: u32,
    },
    /// The file declares a format version this code does not read; it was written by a newer
    /// (or foreign) writer.
    #[error("{}: unsupported {what} version {version}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Which version field: "meta", "thanos meta", "chunk segment", "tombstones", "marker".
        what: &'static str,
        /// The version the file declares.
        version: i64,
    },
    /// A checksum does not match the bytes it covers: the data was damaged after writing.
    #[error("{}: CRC32C mismatch at offset {offset}: stored {expected:#010x}, computed {actual:#010x}", path.display())]
    CrcMismatch {
        /// The file.
        path: PathBuf,
        /// Offset of the record (or section) the checksum covers.
        offset: u64,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum of the bytes as read.
        actual: u32,
    },
    /// Bytes ended early or a varint was malformed while decoding; `source` holds the offset.
    #[error("{}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What could not be decoded, at which offset.
        #[source]
        source: DecodeError,
    },
    /// A chunk reference names a segment file that the block does not have; the index and the
    /// chunks directory disagree.
    #[error("{}: chunk ref {chunk_ref:#x} names segment {segment} but only {num_segments} segment files exist", dir.display())]
    SegmentMissing {
        /// The block's `chunks/` directory.
        dir: PathBuf,
        /// The chunk reference: segment index in the upper 32 bits, offset in the lower.
        chunk_ref: u64,
        /// 0-based segment index taken from the ref.
        segment: u64,
        /// Segment files the directory holds.
        num_segments: usize,
    },
    /// A chunk reference points inside the segment header or past the end of the file.
    #[error("{}: chunk ref {chunk_ref:#x} points at offset {offset}, outside the records (file length {file_len})", path.display())]
    ChunkOutOfBounds {
        /// The segment file.
        path: PathBuf,
        /// The chunk reference: segment index in the upper 32 bits, offset in the lower.
        chunk_ref: u64,
        /// Byte offset the reference points at.
        offset: u64,
        /// Length of the segment file, bytes.
        file_len: u64,
    },
    /// The files in a chunks directory are not numbered 1, 2, 3, … without gaps, so chunk
    /// refs cannot be resolved.
    #[error("{}: segment files not numbered consecutively from 000001: expected {expected}, found {found:?}", dir.display())]
    SegmentNumbering {
        /// The block's `chunks/` directory.
        dir: PathBuf,
        /// The number the next file should have had.
        expected: u64,
        /// The file name found in its place.
        found: String,
    },
    /// A chunk is too large for the format (its length field is 32 bits), or the writer would
    /// need more segments or bigger offsets than a 64-bit ref can hold.
    #[error("{}: chunk of {len} bytes cannot be stored: {reason}", path.display())]
    ChunkTooLarge {
        /// The segment file being written.
        path: PathBuf,
        /// Length of the chunk, bytes.
        len: u64,
        /// Which limit it exceeds.
        reason: &'static str,
    },
    /// A chunk's encoding byte is not one of the values in `docs/formats/tsdb-block.md`, Chunk
    /// encoding bytes.
    #[error("{}: unknown chunk encoding {encoding} in record at offset {offset}", path.display())]
    UnknownEncoding {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the chunk record.
        offset: u64,
        /// The encoding byte found.
        encoding: u8,
    },
}

impl BlockError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BlockError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn decode(path: impl Into<PathBuf>, source: DecodeError) -> Self {
        BlockError::Decode {
            path: path.into(),
            source,
        }
    }
}

/// Flushes a directory's entries (new or renamed files) to disk.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), BlockError> {
    let d = std::fs::File::open(dir).map_err(|e| BlockError::io(dir, e))?;
    d.sync_all().map_err(|e| BlockError::io(dir, e))
}
