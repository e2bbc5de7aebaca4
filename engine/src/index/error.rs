//! Errors of the index reader and writer; each names the file and, where one applies, the byte
//! offset, so a log line is enough to find the damage.

use crate::encoding::DecodeError;
use std::path::PathBuf;

/// What went wrong while reading or writing an index file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The operating system refused to open, read, write or sync the file; retry or check the
    /// disk and permissions.
    #[error("{}: {op}: {source}", .path.display())]
    Io {
        /// The index file.
        path: PathBuf,
        /// What we were doing (`"open"`, `"write"`, `"fsync"`, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than a header plus a table of contents: it is truncated or not an
    /// index at all.
    #[error("{}: file of {size} bytes is too small for an index (header and TOC need 57)", .path.display())]
    TooSmall {
        /// The index file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The first 4 bytes are not the index magic `0xBAAAD700`: the file is not a TSDB index.
    #[error("{}: bad magic {found:#010x} at offset 0 (want 0xbaaad700)", .path.display())]
    BadMagic {
        /// The index file.
        path: PathBuf,
        /// The value found.
        found: u32,
    },
    /// The version byte at offset 4 is neither 1 nor 2; the file was written by a format this
    /// reader does not know.
    #[error("{}: unsupported index version {version} at offset 4 (want 1 or 2)", .path.display())]
    UnsupportedVersion {
        /// The index file.
        path: PathBuf,
        /// The version found.
        version: u8,
    },
    /// A section's stored CRC-32C differs from the one computed over its bytes: the file is
    /// corrupt and should be rebuilt or restored.
    #[error(
        "{}: CRC mismatch in {section} at offset {offset}: stored {expected:#010x}, computed {actual:#010x}",
        .path.display()
    )]
    Crc {
        /// The index file.
        path: PathBuf,
        /// The section (`"TOC"`, `"symbol table"`, `"series"`, `"postings"`, ...).
        section: &'static str,
        /// Byte offset where the section starts.
        offset: u64,
        /// The CRC stored in the file.
        expected: u32,
        /// The CRC computed over the bytes.
        actual: u32,
    },
    /// A field of a section could not be decoded (truncated, bad varint, invalid UTF-8); the
    /// inner error holds the offset.
    #[error("{}: decoding {section}: {source}", .path.display())]
    Decode {
        /// The index file.
        path: PathBuf,
        /// The section being decoded.
        section: &'static str,
        /// What failed, with its absolute offset.
        #[source]
        source: DecodeError,
    },
    /// A section's offset or length points beyond the data that can hold it: the file is
    /// truncated or the length field is corrupt.
    #[error(
        "{}: {section} at offset {offset} with length {len} runs past the end of the data at {limit}",
        .path.display()
    )]
    PastEnd {
        /// The index file.
        path: PathBuf,
        /// The section.
        section: &'static str,
        /// Byte offset of the section.
        offset: u64,
        /// Its claimed length in bytes.
        len: u64,
        /// The first byte it may not reach (start of the TOC, or the file size).
        limit: u64,
    },
    /// A symbol reference (v2: position, v1: byte offset) names no symbol of the table.
    #[error(
        "{}: symbol reference {symbol} read at offset {offset} is out of range ({limit})",
        .path.display()
    )]
    SymbolOutOfRange {
        /// The index file.
        path: PathBuf,
        /// The reference.
        symbol: u32,
        /// Where the reference was read (the symbol table's offset for direct lookups).
        offset: u64,
        /// What a valid reference must be below.
        limit: u64,
    },
    /// A series reference points outside the series section.
    #[error(
        "{}: series ref {series_ref} (offset {offset}) is outside the series section [{start}, {end})",
        .path.display()
    )]
    SeriesRefOutOfRange {
        /// The index file.
        path: PathBuf,
        /// The reference given.
        series_ref: u32,
        /// The byte offset it maps to.
        offset: u64,
        /// Start of the series section.
        start: u64,
        /// End of the series section.
        end: u64,
    },
    /// A section decodes but breaks a rule of the format (unsorted entries, wrong key count,
    /// inconsistent lengths); the file is corrupt.
    #[error("{}: corrupt {section} at offset {offset}: {reason}", .path.display())]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// The section.
        section: &'static str,
        /// Byte offset of the offending field.
        offset: u64,
        /// The rule broken.
        reason: String,
    },
    /// The writer was given symbols that are not sorted and unique; sort and dedup them first.
    #[error(
        "{}: symbol {symbol:?} does not sort after the previous symbol {previous:?} (table at offset {offset})",
        .path.display()
    )]
    UnorderedSymbols {
        /// The index file.
        path: PathBuf,
        /// The offending symbol.
        symbol: String,
        /// The symbol before it.
        previous: String,
        /// Offset of the symbol table.
        offset: u64,
    },
    /// A series label name or value was not among the symbols given to the writer.
    #[error("{}: symbol {symbol:?} of series at offset {offset} is not in the symbol table", .path.display())]
    UnknownSymbol {
        /// The index file.
        path: PathBuf,
        /// The missing string.
        symbol: String,
        /// Offset where the series would have been written.
        offset: u64,
    },
    /// Series were not added in strictly ascending label-set order (or a series had no
    /// labels); sort the series before writing.
    #[error(
        "{}: series {labels} at offset {offset} does not sort after the previous series {previous}",
        .path.display()
    )]
    UnorderedSeries {
        /// The index file.
        path: PathBuf,
        /// The offending label set.
        labels: String,
        /// The label set added before it (`{}` for the first series).
        previous: String,
        /// Offset where the series would have been written.
        offset: u64,
    },
    /// A series' chunk metadata breaks the ordering rules: chunk refs must not decrease (also
    /// across series), chunks must not overlap, and `min_time <= max_time`.
    #[error("{}: bad chunks of series {labels} at offset {offset}: {reason}", .path.display())]
    UnorderedChunks {
        /// The index file.
        path: PathBuf,
        /// The series.
        labels: String,
        /// Offset where the series would have been written.
        offset: u64,
        /// The rule broken.
        reason: String,
    },
    /// The writer's methods were called out of order (symbols twice, or after series).
    #[error("{}: {reason} (at offset {offset})", .path.display())]
    WrongStage {
        /// The index file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
        /// The write position at the time.
        offset: u64,
    },
    /// The index, or one of its length-prefixed sections, would exceed what the format can
    /// address (64 GiB for the file, 4 GiB for a section); split the block.
    #[error("{}: {what} of {size} bytes at offset {offset} exceeds the limit of {limit} bytes", .path.display())]
    TooLarge {
        /// The index file.
        path: PathBuf,
        /// What is too large.
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
        /// Where the section starts.
        offset: u64,
    },
}

impl IndexError {
    /// The byte offset the error refers to, where one applies.
    pub fn offset(&self) -> Option<u64> {
        match self {
            IndexError::Io { .. } | IndexError::TooSmall { .. } => None,
            IndexError::BadMagic { .. } => Some(0),
            IndexError::UnsupportedVersion { .. } => Some(4),
            IndexError::Decode { source, .. } => Some(source.offset()),
            IndexError::Crc { offset, .. }
            | IndexError::PastEnd { offset, .. }
            | IndexError::SymbolOutOfRange { offset, .. }
            | IndexError::SeriesRefOutOfRange { offset, .. }
            | IndexError::Corrupt { offset, .. }
            | IndexError::UnorderedSymbols { offset, .. }
            | IndexError::UnknownSymbol { offset, .. }
            | IndexError::UnorderedSeries { offset, .. }
            | IndexError::UnorderedChunks { offset, .. }
            | IndexError::WrongStage { offset, .. }
            | IndexError::TooLarge { offset, .. } => Some(*offset),
        }
    }
}
