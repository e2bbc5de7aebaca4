//! Chunk encodings and decoded sample batches.
//!
//! A chunk is the compressed sample run of one series. Its payload format is Prometheus's own
//! (`tsdb/chunkenc`); this module reads and writes it bit for bit. [`decode_xor_into`] is the
//! query hot path: it appends a whole chunk to a columnar [`SampleBatch`].

pub mod aggr;
pub mod batch;
pub mod bstream;
pub mod xor;
#[cfg(target_arch = "x86_64")]
mod xor_avx512;
mod xor_fast;
mod xor_many;

#[cfg(test)]
mod tests;

pub use aggr::{AggrChunk, AggrError, AggrType, SubChunk, encode_aggr, retain_aggregates};
pub use batch::SampleBatch;
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
