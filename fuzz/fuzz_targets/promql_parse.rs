//! Arbitrary text as a PromQL query: parsing, formatting and evaluating it (instant and range)
//! over a small in-memory store must return a result or a typed error, never panic.

#![no_main]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use gauntlet_promql::{Engine, EngineOptions};
use gauntlet_engine::query::MemSeries;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static MemSeries {
    static STORE: OnceLock<MemSeries> = OnceLock::new();
    STORE.get_or_init(common::small_store)
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 200_000,
        timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    });
    let _ = engine.format_query(q);
    let _ = engine.instant_query(store(), q, 300_000);
    let _ = engine.range_query(store(), q, 0, 600_000, 30_000);
});
