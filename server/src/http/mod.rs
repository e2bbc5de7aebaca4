//! HTTP endpoints.

pub mod ops;
