//! The in-process engine figure of the `series` scenario: a bucket store over a FILESYSTEM
//! bucket streams every series matching a selector (with chunks) without gRPC, and the rate,
//! CPU time, peak RSS and index-header sizes are reported.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_engine::store::{BucketStore, SeriesQuery, StoreOptions, WireFraming};
use gauntlet_promql::parse_selector;

use super::RunError;
use crate::load::stats::ProcStats;

/// What one in-process streaming pass measured.
#[derive(Debug, Clone)]
pub struct EngineStream {
    /// Series streamed.
    pub series: u64,
    /// Chunks streamed.
    pub chunks: u64,
    /// Chunk payload bytes streamed, or with StoreAPI frames, the frames' bytes.
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
/// warms the page cache and the index cache); returns the best pass. With `frames`, the
/// series are written as the StoreAPI frames the server sends, `frames` series per
/// `SeriesResponse` (`response_batch_size`), and their bytes are counted instead of the
/// chunks' payloads.
pub fn measure(
    bucket: &Path,
    data_dir: &Path,
    selector: &str,
    io: IoChoice,
    passes: usize,
    frames: Option<i64>,
) -> Result<EngineStream, RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cfg =
            BucketConfig::filesystem(bucket).map_err(|e| RunError::Other(e.to_string()))?;
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
            let err = |e: gauntlet_engine::store::StoreError| RunError::Other(e.to_string());
            let (mut series, mut chunks, mut bytes) = (0u64, 0u64, 0u64);
            match frames {
                Some(per) => {
                    let mut s = store
                        .series_wire(&q, WireFraming::for_request(per))
                        .await
                        .map_err(err)?;
                    while let Some(batch) = s.next_batch().await.map_err(err)? {
                        series += batch.len() as u64;
                        chunks += batch.total_chunks() as u64;
                        bytes += batch.into_frames().len() as u64;
                    }
                }
                None => {
                    let mut s = store.series_stream(&q).await.map_err(err)?;
                    while let Some(batch) = s.next_batch().await.map_err(err)? {
                        series += batch.len() as u64;
                        for i in 0..batch.len() {
                            for c in batch.chunks(i) {
                                chunks += 1;
                                bytes += c.data.len() as u64;
                            }
                        }
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
                "pass: {series} series, {chunks} chunks, {bytes} {} bytes in {seconds:.3} s ({:.0} series/s), CPU {:.2} s; index cache {} of {} bytes, {} hits, {} misses",
                if frames.is_some() { "frame" } else { "chunk" },
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
