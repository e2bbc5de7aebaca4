//! Thanos downsampling: raw blocks into 5-minute blocks and those into 1-hour blocks, made of
//! aggregate chunks (count, sum, min, max, counter per window; codec in
//! [`crate::chunk::aggr`]) exactly as Thanos's compactor writes them, so Thanos's store gateway
//! and querier read Gauntlet's downsampled blocks and the other way round.
//!
//! - [`aggregate`]: the per-series aggregation (`DownsampleRaw`, `downsampleAggr`);
//! - [`histogram`]: native histogram runs aggregated to count, sum and counter;
//! - [`block`]: a whole block in, a block with Thanos's `meta.json` out;
//! - [`read`]: the query side, turning served aggregate chunks back into samples for PromQL;
//! - [`select`]: which blocks of which resolution answer a time range.
//!
//! The formats and formulas are in `docs/formats/downsampling.md`.

pub mod aggregate;
pub mod block;
mod counter;
pub mod histogram;
pub mod read;
pub mod select;

pub use aggregate::{AggrChunkOut, downsample_aggr, downsample_raw, window_end};
pub use block::{DownsampleStats, downsample_block, downsample_block_with};
pub use read::{AggrRead, ServedChunk, decode_chunks, resolution_for};
pub use select::{BlockSpan, blocks_for_range};

use std::path::PathBuf;

use crate::block::BlockError;
use crate::chunk::{AggrError, AggrType, ChunkError};
use crate::index::IndexError;

/// Raw data: no downsampling, ms.
pub const RES_RAW: i64 = 0;
/// The 5-minute resolution, ms.
pub const RES_5M: i64 = 5 * 60 * 1000;
/// The 1-hour resolution, ms.
pub const RES_1H: i64 = 60 * 60 * 1000;
/// Resolutions a store serves, coarsest first.
pub const RESOLUTIONS: [i64; 3] = [RES_1H, RES_5M, RES_RAW];

/// What can go wrong downsampling a block or reading downsampled chunks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownsampleError {
    /// The target resolution is not one Thanos uses or not coarser than the block's own; pick
    /// 5m for raw blocks and 1h for 5m blocks.
    #[error("cannot downsample a block of resolution {from} ms to {to} ms")]
    InvalidResolution {
        /// The block's resolution, ms.
        from: i64,
        /// The requested resolution, ms.
        to: i64,
    },
    /// A file of the source block is unreadable or corrupt.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The source index is unreadable, or the output index could not be written.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Opening the source block failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// A series' chunks overlap in time; the block needs vertical compaction first.
    #[error("series {series}: chunks overlap ({detail})")]
    OverlappingChunks {
        /// The series' labels.
        series: String,
        /// The two chunk ranges.
        detail: String,
    },
    /// A chunk has an encoding downsampling does not handle: an unknown one, or native
    /// histogram aggregates of a 5m block (only raw histograms are downsampled so far).
    #[error("series {series}: chunk encoding {encoding} cannot be downsampled")]
    UnsupportedEncoding {
        /// The series' labels.
        series: String,
        /// The encoding byte.
        encoding: u8,
    },
    /// A raw chunk's payload does not decode.
    #[error("series {series}: {source}")]
    Chunk {
        /// The series' labels.
        series: String,
        /// The decoder's error.
        source: ChunkError,
    },
    /// An aggregate chunk is malformed or lacks an aggregate that is needed.
    #[error(transparent)]
    Aggr(#[from] AggrError),
    /// An output sub-chunk would exceed the XOR chunk's sample limit.
    #[error("aggregate {aggregate}: {source}")]
    Encode {
        /// The aggregate being written.
        aggregate: AggrType,
        /// The encoder's error.
        source: ChunkError,
    },
    /// A served chunk has neither the aggregate a reader needs nor a raw chunk, or its count
    /// and sum sub-chunks do not line up.
    #[error("chunk [{min_time}, {max_time}]: {reason}")]
    Unreadable {
        /// Chunk start, ms.
        min_time: i64,
        /// Chunk end, ms.
        max_time: i64,
        /// What is missing or misaligned.
        reason: String,
    },
    /// Creating, writing or renaming the output block failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Parses a resolution as the command line gives it: `raw`, `0`, `5m` or `1h`; ms.
pub fn parse_resolution(s: &str) -> Option<i64> {
    match s.trim() {
        "raw" | "0" | "0s" => Some(RES_RAW),
        "5m" | "300000" => Some(RES_5M),
        "1h" | "60m" | "3600000" => Some(RES_1H),
        _ => None,
    }
}
