//! What several targets share: the small in-memory store queries run over.

use gauntlet_engine::chunk::SampleBatch;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};

/// Two counters and two histogram buckets, 15 s apart for 10 minutes, one NaN each.
pub fn small_store() -> MemSeries {
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
            histograms: Default::default(),
            labels: Labels::from_pairs(pairs),
            samples: SampleBatch { ts, val },
        });
    }
    MemSeries::new(series)
}
