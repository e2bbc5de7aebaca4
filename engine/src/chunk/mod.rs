//! Chunk encodings and decoded sample batches.
//!
//! A chunk is the compressed sample run of one series. Its payload format is Prometheus's own
//! (`tsdb/chunkenc`); this module reads and writes it bit for bit. [`decode_xor_into`] is the
//! query hot path: it appends a whole chunk to a columnar [`SampleBatch`]. Native histograms
//! have chunks of their own: [`HistogramAppender`] and [`HistogramIterator`] for integer
//! histograms, [`FloatHistogramAppender`] and [`FloatHistogramIterator`] for float ones.

pub mod aggr;
pub mod batch;
pub mod bstream;
pub mod float_histogram;
pub mod histogram;
mod histogram_batch;
mod histogram_layout;
mod histogram_recode;
mod varbit;
pub mod xor;
#[cfg(target_arch = "x86_64")]
mod xor_avx512;
mod xor_fast;
mod xor_many;

#[cfg(test)]
mod tests;

use crate::histogram::HistogramError;

pub use aggr::{AggrChunk, AggrError, AggrType, SubChunk, encode_aggr, retain_aggregates};
pub use batch::{HistogramBatch, SampleBatch};
pub use float_histogram::{
    FloatHistogramAppender, FloatHistogramIterator, decode_float_histogram_chunk,
};
pub use histogram::{
    HistogramAppend, HistogramAppender, HistogramIterator, decode_histogram_chunk,
};
pub use histogram_batch::{
    ReusedDecode, decode_histogram_chunks_reusing, decode_histogram_stats_reusing,
};
pub use histogram_layout::{CounterResetHeader, MAX_HISTOGRAM_SAMPLES, counter_reset_hint};
pub use xor::{XorAppender, XorIterator, decode_xor_into, encode_xor};
pub(crate) use xor_many::decode_xor_many_at;
pub use xor_many::{ManyDecodeError, decode_xor_many, decode_xor_many_flat, xor_many_kernel_name};

/// Prometheus's stale marker: a NaN with this exact bit pattern, which must survive encoding.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus's stale marker (compares bits, as any NaN compares unequal).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// TSDB chunk encoding byte, as stored in chunk segment records (`docs/formats/tsdb-block.md`,
/// Chunk encoding bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Float samples, Gorilla-style XOR compression.
    Xor = 1,
    /// Integer native histograms.
    Histogram = 2,
    /// Float native histograms.
    FloatHistogram = 3,
    /// Floats with an optional start timestamp (newer Prometheus, opt-in).
    Xor2 = 4,
    /// Integer native histograms with start timestamps (experimental).
    HistogramSt = 5,
    /// Float native histograms with start timestamps (experimental).
    FloatHistogramSt = 6,
    /// Thanos downsampled aggregate chunk.
    Aggr = 0xFF,
}

impl Encoding {
    /// The byte stored on disk.
    #[inline]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Encoding {
    type Error = ChunkError;

    fn try_from(b: u8) -> Result<Self, ChunkError> {
        Ok(match b {
            1 => Encoding::Xor,
            2 => Encoding::Histogram,
            3 => Encoding::FloatHistogram,
            4 => Encoding::Xor2,
            5 => Encoding::HistogramSt,
            6 => Encoding::FloatHistogramSt,
            0xFF => Encoding::Aggr,
            _ => return Err(ChunkError::UnknownEncoding { byte: b }),
        })
    }
}

/// Why a chunk could not be decoded or encoded.
///
/// Offsets count from the first byte of the chunk payload (the sample count), not the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The encoding byte is 0 or not one Prometheus or Thanos defines: the record is corrupt or
    /// comes from a newer writer; skip the chunk or fail the read.
    #[error("unknown chunk encoding byte {byte:#04x}")]
    UnknownEncoding {
        /// The byte found.
        byte: u8,
    },
    /// The payload is shorter than its 2-byte sample count: the chunk is corrupt.
    #[error("chunk payload of {len} bytes has no 2-byte sample count")]
    MissingHeader {
        /// Payload length in bytes.
        len: usize,
    },
    /// The bit stream ended inside sample `sample` (0-based) of the `num_samples` the header
    /// announces: the chunk is truncated or corrupt.
    #[error(
        "chunk payload truncated in sample {sample} of {num_samples}: needed bit {bit_offset} \
         (byte {}), payload has {bit_len} bits",
        bit_offset / 8
    )]
    Truncated {
        /// Index of the sample being decoded.
        sample: usize,
        /// Sample count from the header.
        num_samples: usize,
        /// Bit position reached, from the start of the payload.
        bit_offset: u64,
        /// Payload length in bits.
        bit_len: u64,
    },
    /// A varint timestamp field is longer than 10 bytes or overflows 64 bits: the chunk is
    /// corrupt.
    #[error("invalid varint timestamp in sample {sample} at byte {byte_offset}")]
    InvalidVarint {
        /// Index of the sample being decoded.
        sample: usize,
        /// Byte position of the varint, from the start of the payload.
        byte_offset: u64,
    },
    /// A value header announces more leading plus significant bits than a float64 has; no
    /// Prometheus writer emits this, so the chunk is corrupt.
    #[error(
        "invalid XOR value header in sample {sample} at bit {bit_offset}: {leading} leading + \
         {significant} significant bits exceed 64"
    )]
    InvalidValueHeader {
        /// Index of the sample being decoded.
        sample: usize,
        /// Bit position of the header, from the start of the payload.
        bit_offset: u64,
        /// Leading zero bits announced.
        leading: u8,
        /// Significant bits announced.
        significant: u8,
    },
    /// A chunk can hold at most `max` samples (its count field is a u16); cut a new chunk first.
    #[error("chunk is full: at most {max} samples fit")]
    TooManySamples {
        /// The limit, 65535.
        max: usize,
    },
    /// A histogram chunk payload is shorter than its 3-byte header (sample count and flags):
    /// the chunk is corrupt.
    #[error("histogram chunk payload of {len} bytes has no 3-byte header")]
    MissingHistogramHeader {
        /// Payload length in bytes.
        len: usize,
    },
    /// A histogram chunk's layout names a schema other than -4..=8 and -53: the chunk is
    /// corrupt, or comes from a writer with resolutions Gauntlet does not know.
    #[error("histogram chunk has schema {schema}, neither -4..=8 nor -53")]
    UnknownHistogramSchema {
        /// The schema read.
        schema: i64,
    },
    /// A histogram chunk announces more spans, buckets or custom bounds than its remaining
    /// bits could hold: the chunk is corrupt. Nothing was allocated for them.
    #[error("histogram chunk announces {count} {field} but only {bits_left} bits remain")]
    HistogramCountTooLarge {
        /// What is counted.
        field: &'static str,
        /// The count read.
        count: u64,
        /// Bits left in the payload.
        bits_left: u64,
    },
    /// A span of a histogram chunk has a length or an offset beyond 32 bits: the chunk is
    /// corrupt.
    #[error(
        "histogram chunk {field}: span of length {length} at offset {offset} does not fit 32 \
         bits, before bit {bit_offset}"
    )]
    HistogramSpanOutOfRange {
        /// Which spans (positive or negative).
        field: &'static str,
        /// The length read.
        length: u64,
        /// The offset read.
        offset: i64,
        /// Bit position after the span, from the start of the payload.
        bit_offset: u64,
    },
    /// A histogram chunk's layout is one no writer stores (spans overlapping, custom bounds
    /// out of order or too few…): the chunk is corrupt.
    #[error("invalid histogram chunk layout: {source}")]
    InvalidHistogramLayout {
        /// What is wrong with it.
        source: HistogramError,
    },
    /// A sample of a histogram chunk decodes to a histogram no writer stores (a negative
    /// bucket count): the chunk is corrupt.
    #[error("invalid histogram in sample {sample}: {source}")]
    InvalidHistogramSample {
        /// Index of the sample.
        sample: usize,
        /// What is wrong with it.
        source: HistogramError,
    },
    /// A histogram given to an appender fails validation; it is not stored.
    #[error("histogram not appended: {source}")]
    InvalidHistogram {
        /// What is wrong with it.
        source: HistogramError,
    },
    /// A sample is not after the last one of its series (same timestamp or older); Prometheus
    /// rejects it too. Drop it or send it to an out-of-order path.
    #[error("sample at {t} ms is not after the series' last sample at {max_t} ms")]
    OutOfOrderSample {
        /// The sample's timestamp, ms.
        t: i64,
        /// The series' last timestamp, ms.
        max_t: i64,
    },
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn encoding_byte_round_trips_and_rejects_unknown() {
        for e in [
            Encoding::Xor,
            Encoding::Histogram,
            Encoding::FloatHistogram,
            Encoding::Xor2,
            Encoding::HistogramSt,
            Encoding::FloatHistogramSt,
            Encoding::Aggr,
        ] {
            assert_eq!(Encoding::try_from(e.as_u8()), Ok(e));
        }
        assert_eq!(Encoding::Aggr.as_u8(), 0xFF);
        for b in [0u8, 7, 8, 0x80, 0xFE] {
            assert_eq!(
                Encoding::try_from(b),
                Err(ChunkError::UnknownEncoding { byte: b })
            );
        }
    }

    #[test]
    fn stale_marker_is_a_nan_recognised_by_bits() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert!(stale.is_nan());
        assert!(is_stale_nan(stale));
        assert!(!is_stale_nan(f64::NAN));
    }
}
