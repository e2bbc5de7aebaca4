//! `gauntlet tools block downsample SRC DST --resolution 5m|1h`: writes the downsampled copy of
//! a block, as Thanos's compactor does, into DST.

use std::path::Path;

use anyhow::{Context, bail};
use gauntlet_engine::downsample::{RES_RAW, downsample_block_with, parse_resolution};

/// Downsamples the block in `src` to `resolution` into a new block under `dst`, printing its
/// directory and what it took.
pub fn run(src: &Path, dst: &Path, resolution: &str) -> anyhow::Result<()> {
    let res = match parse_resolution(resolution) {
        Some(r) if r != RES_RAW => r,
        _ => bail!("--resolution must be 5m or 1h, not {resolution:?}"),
    };
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let bar = super::progress_bar(1, "downsample");
    bar.set_message("series");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let s = downsample_block_with(src, dst, res, threads, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("downsampling {} to {resolution}", src.display()));
    bar.finish_and_clear();
    let s = s?;
    let rate = if s.seconds > 0.0 {
        s.samples_in as f64 / s.seconds
    } else {
        0.0
    };
    println!(
        "{}\tresolution {} ms\tseries {} of {}\tsamples read {}\tchunks {}\t{:.3} s\t{:.0} samples/s",
        s.dir.display(),
        res,
        s.series_out,
        s.series_in,
        s.samples_in,
        s.meta.stats.num_chunks,
        s.seconds,
        rate
    );
    Ok(())
}
