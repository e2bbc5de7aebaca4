//! PromQL over a directory of blocks read through the bucket store, in-process, for profiling
//! (`perf record`, `valgrind --tool=callgrind`): each query runs `--runs` times as a range
//! query over the blocks' whole span (step 60 s), or with `--instant` at its end, printing
//! wall and process CPU time.
//!
//! ```sh
//! cargo run --release -p gauntlet-bench --example promql_blocks -- DIR [--runs N] [--instant] [QUERY ...]
//! ```
//!
//! `DIR` is a filesystem bucket (a directory of blocks); index-headers go to `DIR/.gauntlet`.

use std::sync::Arc;
use std::time::Instant;

use gauntlet_engine::block::block_dirs;
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::store::{BucketStore, StoreOptions};
use gauntlet_promql::Engine;

/// The issue's heavy aggregations, queried when none are given.
const DEFAULT_QUERIES: [&str; 4] = [
    "sum(rate(http_requests_total[5m]))",
    "count({__name__=~\".+\"})",
    "sum without (cpu) (rate(node_cpu_seconds_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
];

/// User plus system CPU time of this process, s.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::fs::canonicalize(args.next().ok_or_else(|| anyhow::anyhow!("usage: DIR"))?)?;
    let mut runs = 3;
    let mut instant = false;
    let mut queries: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().unwrap_or_default().parse()?;
        } else if a == "--instant" {
            instant = true;
        } else {
            queries.push(a);
        }
    }
    if queries.is_empty() {
        queries = DEFAULT_QUERIES.iter().map(|q| q.to_string()).collect();
    }
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    for d in block_dirs(&dir)? {
        let meta = gauntlet_engine::block::BlockMeta::read(&d)?;
        mint = mint.min(meta.min_time);
        maxt = maxt.max(meta.max_time);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = rt.block_on(async {
        let s = Arc::new(BucketStore::open(
            Bucket::open(&BucketConfig::filesystem(&dir)?)?,
            &dir.join(".gauntlet"),
            StoreOptions::default(),
        )?);
        s.sync().await?;
        anyhow::Ok(s)
    })?;
    let engine = Engine::default();
    let (start, end) = (mint / 60_000 * 60_000 + 60_000, maxt / 60_000 * 60_000);
    for q in &queries {
        for _ in 0..runs {
            let (t0, c0) = (Instant::now(), cpu_s());
            let r = if instant {
                engine.instant_query(store.as_ref(), q, end)?
            } else {
                engine.range_query(store.as_ref(), q, start, end, 60_000)?
            };
            println!(
                "{:8.1} ms wall {:8.1} ms cpu  peak {:>9} samples  rss {:>4} MiB (peak {:>4})  {q}",
                t0.elapsed().as_secs_f64() * 1e3,
                (cpu_s() - c0) * 1e3,
                r.peak_samples,
                status_kib("VmRSS") / 1024,
                status_kib("VmHWM") / 1024,
            );
        }
    }
    Ok(())
}
