//! `gauntlet all`: store and query in one process over a filesystem bucket, the HTTP API
//! reading blocks in-process without a gRPC hop. `--demo` first fills an empty bucket with a
//! day of generated data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use gauntlet_bench::datagen::{Families, GenConfig, write_blocks_dir};
use gauntlet_engine::block::block_dirs;

use crate::http::api::{ApiConfig, ApiState, router};
use crate::query::local::LocalSource;

/// Flags of `gauntlet all`.
#[derive(Debug, Args)]
pub struct AllArgs {
    /// The filesystem bucket: a directory of blocks (created if missing).
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// Address of the StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: String,
    /// Fill an empty bucket with a day of generated data (10 hosts, 15 s scrapes) first.
    #[arg(long)]
    pub demo: bool,
    /// Longest a query may run.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = crate::query::cmd::duration)]
    pub timeout: Duration,
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: AllArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    if args.demo {
        fill_demo(&args.data_dir)?;
    }
    let source = Arc::new(LocalSource::new(&args.data_dir));
    let blocks = source.blocks()?;
    tracing::info!(
        dir = %args.data_dir.display(),
        blocks = blocks.blocks().len(),
        "serving blocks"
    );
    let state = Arc::new(ApiState {
        source,
        config: ApiConfig {
            timeout: args.timeout,
            ..ApiConfig::default()
        },
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gauntlet-net")
        .build()?;
    rt.block_on(crate::http::serve(
        &args.http_address,
        router(state),
        crate::http::shutdown_signal(),
    ))
}

/// Writes a day of demo data ending at the last full hour, unless the bucket holds blocks.
fn fill_demo(dir: &Path) -> anyhow::Result<()> {
    if !block_dirs(dir)?.is_empty() {
        tracing::info!("bucket already holds blocks; --demo leaves it as it is");
        return Ok(());
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let hour = 3_600_000;
    let end = now_ms / hour * hour;
    let cfg = GenConfig {
        targets: 10,
        scrape_interval_ms: 15_000,
        start_ms: end - 24 * hour,
        duration_ms: 24 * hour,
        churn_every_ms: 30 * 60_000,
        churn_fraction: 0.25,
        seed: 1,
        families: Families::default(),
    };
    let started = Instant::now();
    tracing::info!("generating a day of demo data");
    let metas = write_blocks_dir(&cfg, dir).context("writing demo blocks")?;
    tracing::info!(
        blocks = metas.len(),
        seconds = started.elapsed().as_secs_f64(),
        "demo data written"
    );
    Ok(())
}
