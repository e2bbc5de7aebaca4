//! PromQL held to Prometheus, one test binary: its own promqltest scripts, differential runs
//! against a real Prometheus, the API surface, streaming, round trips and hostile queries.

mod common;

mod hostile;
mod hostile_queries;
mod prometheus_differential;
mod promql_api;
mod promql_stream;
mod promqltest;
mod round_trip;
mod scripts;
