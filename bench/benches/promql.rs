//! PromQL evaluation over an in-memory store: the heavy aggregations of the query set
//! (`sum(rate(...[5m]))`, `count({__name__=~".+"})`, grouped sums, quantiles), range queries
//! over 2 h at a 60 s step, so the engine's own cost is measured apart from storage.

use criterion::{Criterion, criterion_group, criterion_main};
use gauntlet_engine::chunk::SampleBatch;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};
use gauntlet_promql::Engine;

/// Series count of the bench store.
const SERIES: usize = 10_000;
/// Scrape interval, ms.
const SCRAPE_MS: i64 = 15_000;
/// Data span, ms (2 h).
const SPAN_MS: i64 = 2 * 3_600_000;

fn store() -> MemSeries {
    let n = (SPAN_MS / SCRAPE_MS) as usize + 1;
    let series = (0..SERIES)
        .map(|i| {
            let ts: Vec<i64> = (0..n as i64).map(|k| k * SCRAPE_MS).collect();
            let mut v = 0.0;
            let val = (0..n)
                .map(|k| {
                    v += ((i * 31 + k * 7) % 13) as f64;
                    // A counter reset now and then.
                    if (i + k) % 997 == 0 {
                        v = 0.0;
                    }
                    v
                })
                .collect();
            Series::floats(
                Labels::from_pairs([
                    ("__name__", "http_requests_total".to_string()),
                    ("job", format!("job-{}", i % 10)),
                    ("instance", format!("host-{i}")),
                    ("code", ["200", "404", "500"][i % 3].to_string()),
                ]),
                SampleBatch { ts, val },
            )
        })
        .collect();
    MemSeries::new(series)
}

fn bench(c: &mut Criterion) {
    let store = store();
    let engine = Engine::default();
    let mut g = c.benchmark_group("promql_range_2h_step60s_10k_series");
    g.sample_size(10);
    for q in [
        "sum(rate(http_requests_total[5m]))",
        "sum by (job) (rate(http_requests_total[5m]))",
        "count({__name__=~\".+\"})",
        "quantile(0.9, rate(http_requests_total[5m]))",
        "topk(5, rate(http_requests_total[5m]))",
        "http_requests_total / on(instance) group_left sum by (instance) (http_requests_total)",
        "http_requests_total - http_requests_total offset 1m",
    ] {
        g.bench_function(q, |b| {
            b.iter(|| {
                engine
                    .range_query(&store, q, 600_000, SPAN_MS, 60_000)
                    .expect("query")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
