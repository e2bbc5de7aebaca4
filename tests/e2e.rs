//! Gauntlet's end-to-end tests, one test binary: each module starts the `gauntlet` binary and
//! the real peers it must agree with (Prometheus, promtool, Thanos, object-storage servers, a
//! browser) on loopback. Run one module with `cargo nextest run -p gauntlet --test e2e
//! MODULE::`; `tests/README.md` says what each proves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on fails by panicking, at the line it stopped"
)]

mod common;

mod all_demo;
mod bad_input;
mod blocks;
mod compact;
mod config_errors;
mod dashboard;
mod deploy;
mod downsample;
mod exemplars;
mod gcs_azure;
mod histograms;
mod hostile_requests;
mod http_api;
mod http_histograms;
mod interop;
mod logging;
mod memory_budget;
mod metrics_format;
mod promql_prometheus3;
mod querier;
mod querier_stream;
mod query_frontend;
mod query_pool;
mod query_stats;
mod receive;
mod receive_disk_full;
mod receive_hashring;
mod receive_histogram;
mod receive_histogram_head;
mod receive_histogram_ring;
mod role_budgets;
mod rule_alerts;
mod rule_grpc_query;
mod rule_histograms;
mod rule_query_config;
mod rule_stateless;
mod rules_prometheus3;
mod rules_unittest;
mod s3;
mod security;
mod sidecar;
mod standalone;
mod store;
mod store_limits;
mod store_sharding;
mod tenancy;
mod tls;
mod tools_bucket;
mod web_ui;
mod web_ui_rules;
