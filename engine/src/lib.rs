//! Gauntlet's data engine: everything about data, nothing about sockets.
//!
//! The formats here are Prometheus's and Thanos's own (byte layouts in `docs/formats/`); the
//! engine reads what they write and writes what they read.

pub mod alloc;
pub mod block;
pub mod bucket;
pub mod budget;
pub mod buffers;
pub mod chunk;
pub mod compact;
pub mod downsample;
pub mod encoding;
pub mod error;
pub mod exposition;
pub mod go_format;
pub mod go_math;
pub mod head;
pub mod histogram;
pub mod index;
pub mod labels;
pub mod parquet;
pub mod query;
pub mod relabel;
pub mod remote_write;
pub mod shard;
pub mod store;
pub mod wal;

pub use error::{Error, ErrorClass, Result};
