//! The in-process engine figure of the `series` scenario: a bucket store over a FILESYSTEM
//! bucket streams every series matching a selector (with chunks) without gRPC, and the rate,
//! CPU time, peak RSS and index-header sizes are reported.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::labels::parse_selector;
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_engine::store::{BucketStore, SeriesQuery, StoreOptions};

use super::RunError;
use crate::load::stats::ProcStats;

/// What one in-process streaming pass measured.
#[derive(Debug, Clone)]
pub struct EngineStream {
    /// Series streamed.
    pub series: u64,
    /// Chunks streamed.
    pub chunks: u64,
    /// Chunk payload bytes streamed.
    pub chunk_bytes: u64,
    /// Wall time of the pass, s.
    pub seconds: f64,
    /// Process CPU time over the pass (user + system), s.
    pub cpu_s: f64,
    /// Peak RSS of the process so far, bytes.
    pub peak_rss_bytes: u64,
    /// Index-header file size of each block, bytes.
    pub header_bytes: Vec<u64>,
    /// The I/O backend used.
    pub backend: String,
}

/// Opens a store over `bucket` and streams `selector` over all time `passes` times (the first
/// warms the page cache and the index cache); returns the best pass.
pub fn measure(
    bucket: &Path,
    data_dir: &Path,
    selector: &str,
    io: IoChoice,
    passes: usize,
) -> Result<EngineStream, RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cfg = BucketConfig::parse(&format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ))
        .map_err(|e| RunError::Other(e.to_string()))?;
        let b = Bucket::open(&cfg).map_err(|e| RunError::Other(e.to_string()))?;
        let opts = StoreOptions {
            runtime: RuntimeConfig {
                io,
                pin: true,
                ..RuntimeConfig::default()
            },
            ..StoreOptions::default()
        };
        let store = Arc::new(
            BucketStore::open(b, data_dir, opts).map_err(|e| RunError::Other(e.to_string()))?,
        );
        store.sync().await.map_err(|e| RunError::Other(e.to_string()))?;
        let matchers = parse_selector(selector).map_err(|e| RunError::Other(e.to_string()))?;
        let q = SeriesQuery {
            min_time: i64::MIN,
            max_time: i64::MAX,
            matchers,
            abort_on_error: true,
            ..SeriesQuery::default()
        };
        let mut best: Option<EngineStream> = None;
        for _ in 0..passes.max(1) {
            let before = ProcStats::read("self").ok();
            let t = Instant::now();
            let mut s = store
                .series_stream(&q)
                .await
                .map_err(|e| RunError::Other(e.to_string()))?;
            let (mut series, mut chunks, mut bytes) = (0u64, 0u64, 0u64);
            while let Some(batch) = s
                .next_batch()
                .await
                .map_err(|e| RunError::Other(e.to_string()))?
            {
                series += batch.len() as u64;
                for i in 0..batch.len() {
                    for c in batch.chunks(i) {
                        chunks += 1;
                        bytes += c.data.len() as u64;
                    }
                }
            }
            let seconds = t.elapsed().as_secs_f64();
            let after = ProcStats::read("self").ok();
            let pass = EngineStream {
                series,
                chunks,
                chunk_bytes: bytes,
                seconds,
                cpu_s: before.zip(after).map_or(0.0, |(b, a)| a.cpu_s - b.cpu_s),
                peak_rss_bytes: after.map_or(0, |a| a.peak_rss_bytes),
                header_bytes: store.blocks().iter().map(|b| b.header.file_size()).collect(),
                backend: store.io_backend().to_string(),
            };
            let c = store.cache_stats();
            eprintln!(
                "pass: {series} series, {chunks} chunks, {bytes} chunk bytes in {seconds:.3} s ({:.0} series/s), CPU {:.2} s; index cache {} of {} bytes, {} hits, {} misses",
                series as f64 / seconds,
                pass.cpu_s,
                c.bytes,
                c.budget,
                c.hits,
                c.misses
            );
            if best.as_ref().is_none_or(|b| pass.seconds < b.seconds) {
                best = Some(pass);
            }
        }
        best.ok_or_else(|| RunError::Other("no pass ran".into()))
    })
}
