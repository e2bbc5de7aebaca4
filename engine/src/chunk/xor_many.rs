//! Decoding many XOR chunks in one call, as the store and PromQL read them: every chunk of the
//! series a query selected, each into its own batch.

use super::xor::decode_xor_into;
use super::{ChunkError, SampleBatch};

/// Why [`decode_xor_many`] could not decode every chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManyDecodeError {
    /// Chunk `chunk` (index into the `chunks` argument) is corrupt or truncated; `source` names
    /// the sample and bit. Its batch is as it was; the other chunks were decoded.
    #[error("chunk {chunk}: {source}")]
    Chunk {
        /// Index of the first chunk that failed.
        chunk: usize,
        /// What is wrong with it.
        source: ChunkError,
    },
    /// There are fewer output batches than chunks: a caller bug. Nothing was decoded.
    #[error("{chunks} chunks but only {outs} output batches")]
    TooFewOutputs {
        /// Number of chunks passed.
        chunks: usize,
        /// Number of batches passed.
        outs: usize,
    },
}

/// Decodes every XOR payload `chunks[k]` (each starting with its 2-byte sample count) and
/// appends its samples to `outs[k]`, bit for bit as [`decode_xor_into`] does; returns the number
/// of samples appended in all. Batches past `chunks.len()` are left alone.
///
/// A corrupt chunk does not stop the others: every chunk that decodes is appended, every chunk
/// that fails leaves its batch as it was, and the error names the first that failed.
pub fn decode_xor_many(
    chunks: &[&[u8]],
    outs: &mut [SampleBatch],
) -> Result<usize, ManyDecodeError> {
    if outs.len() < chunks.len() {
        return Err(ManyDecodeError::TooFewOutputs {
            chunks: chunks.len(),
            outs: outs.len(),
        });
    }
    let mut total = 0;
    let mut first_err = None;
    for (k, (data, out)) in chunks.iter().zip(outs.iter_mut()).enumerate() {
        match decode_xor_into(data, out) {
            Ok(n) => total += n,
            Err(source) => {
                first_err.get_or_insert(ManyDecodeError::Chunk { chunk: k, source });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}
