//! Gauntlet's data engine: everything about data, nothing about sockets.
//!
//! The formats here are Prometheus's and Thanos's own (see `docs/` beside each module); the
//! engine reads what they write and writes what they read.

pub mod block;
pub mod chunk;
pub mod encoding;
pub mod index;
pub mod labels;
