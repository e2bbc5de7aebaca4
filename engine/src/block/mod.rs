//! Blocks: meta.json, chunk segments, tombstones, block reader and writer.
