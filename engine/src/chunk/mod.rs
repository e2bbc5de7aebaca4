//! Chunk encodings and decoded sample batches.
