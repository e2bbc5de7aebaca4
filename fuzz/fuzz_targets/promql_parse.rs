//! Arbitrary text as a PromQL query: parsing, formatting and evaluating it (instant and range)
//! over a small in-memory store must return a result or a typed error, never panic.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use gauntlet_engine::chunk::SampleBatch;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::promql::{Engine, EngineOptions};
use gauntlet_engine::query::{MemSeries, Series};
use libfuzzer_sys::fuzz_target;

fn store() -> &'static MemSeries {
    static STORE: OnceLock<MemSeries> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut series = Vec::new();
        for (i, (name, job, le)) in [
            ("http_requests_total", "api", ""),
            ("http_requests_total", "web", ""),
            ("latency_bucket", "api", "0.1"),
            ("latency_bucket", "api", "+Inf"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut pairs = vec![("__name__", name), ("job", job)];
            if !le.is_empty() {
                pairs.push(("le", le));
            }
            let ts: Vec<i64> = (0..40).map(|k| k * 15_000).collect();
            let val = ts
                .iter()
                .map(|&t| match t {
                    300_000 => f64::NAN,
                    _ => (t / 1000) as f64 * (i + 1) as f64,
                })
                .collect();
            series.push(Series {
                labels: Labels::from_pairs(pairs),
                samples: SampleBatch { ts, val },
            });
        }
        MemSeries::new(series)
    })
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
