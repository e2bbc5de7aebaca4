//! PromQL held to Prometheus, one test binary: its own promqltest scripts, differential runs
//! against a real Prometheus, the API surface, streaming, round trips and hostile queries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on fails by panicking, at the line it stopped"
)]

mod common;

mod hostile;
mod hostile_queries;
mod prometheus_differential;
mod promql_api;
mod promql_stream;
mod promqltest;
mod round_trip;
mod scripts;
