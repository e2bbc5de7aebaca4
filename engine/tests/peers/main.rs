//! The engine against real peers, one test binary: Prometheus and promtool write WALs, WBLs and
//! blocks, Go prints floats, and the engine reads, replays and compacts them as they do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on fails by panicking, at the line it stopped"
)]

#[path = "../../../tests/common/mod.rs"]
mod common;

mod go_format_reference;
mod histogram_compact;
mod histogram_prometheus;
mod wal_histogram_prometheus;
mod wal_prometheus;
mod wal_promtool;
mod wbl_histogram_prometheus;
mod wbl_prometheus;
