//! `gauntlet tools block dump | inspect | create-from-openmetrics | downsample | label-filter`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use gauntlet_engine::block::dump::{DumpOptions, dump};
use gauntlet_engine::block::inspect::inspect;
use gauntlet_engine::block::{Block, CutOptions, block_dirs, write_blocks};
use gauntlet_engine::exposition::parse_exposition;
use gauntlet_promql::parse_selector;

/// Block commands.
#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// Prints every sample as `{labels} value timestamp_ms`, like `promtool tsdb dump`.
    Dump {
        /// A block directory, or a directory of blocks (a bucket or Prometheus data dir).
        #[arg(default_value = "./data")]
        dir: PathBuf,
        /// Series selector, e.g. `up{job="api"}`; repeatable (a series matching any is printed).
        #[arg(long = "match")]
        matchers: Vec<String>,
        /// First timestamp to print, ms.
        #[arg(long, default_value_t = i64::MIN, allow_hyphen_values = true)]
        min_time: i64,
        /// Last timestamp to print, ms.
        #[arg(long, default_value_t = i64::MAX, allow_hyphen_values = true)]
        max_time: i64,
    },
    /// Prints series, samples, chunks, bytes per sample and label cardinality of each block.
    Inspect {
        /// A block directory, or a directory of blocks.
        #[arg(default_value = "./data")]
        dir: PathBuf,
        /// When DIR holds no blocks, first write a small generated sample block into it.
        #[arg(long)]
        sample: bool,
        /// How many label names to list per block.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Writes blocks from an OpenMetrics file with timestamps, like `promtool tsdb create-blocks-from openmetrics`.
    CreateFromOpenmetrics {
        /// The OpenMetrics (or Prometheus text) input.
        input: PathBuf,
        /// Directory to write the blocks into.
        #[arg(default_value = "./data")]
        output: PathBuf,
        /// Block duration, e.g. `2h`.
        #[arg(long, default_value = "2h")]
        block_duration: String,
    },
    /// Builds the label filter the store keeps per block and prints its size, build time and
    /// measured false-positive rate.
    LabelFilter {
        /// A block directory, or a directory of blocks.
        dir: PathBuf,
        /// Absent pairs to look up when measuring false positives.
        #[arg(long, default_value_t = 1_000_000)]
        probes: usize,
    },
    /// Writes the downsampled copy of a block (Thanos aggregate chunks, `meta.json` with
    /// `thanos.downsample.resolution`) into DST: 5m from a raw block, 1h from a raw or 5m one.
    Downsample {
        /// The block directory to read.
        src: PathBuf,
        /// Directory the new block is written into (created if missing).
        dst: PathBuf,
        /// Target resolution: `5m` or `1h`.
        #[arg(long)]
        resolution: String,
    },
}

/// Runs a block command.
pub fn run(cmd: BlockCmd) -> anyhow::Result<()> {
    match cmd {
        BlockCmd::Dump {
            dir,
            matchers,
            min_time,
            max_time,
        } => run_dump(&dir, &matchers, min_time, max_time),
        BlockCmd::Inspect { dir, sample, top } => run_inspect(&dir, sample, top),
        BlockCmd::LabelFilter { dir, probes } => super::label_filter::run(&dir, probes),
        BlockCmd::Downsample {
            src,
            dst,
            resolution,
        } => super::downsample::run(&src, &dst, &resolution),
        BlockCmd::CreateFromOpenmetrics {
            input,
            output,
            block_duration,
        } => {
            let range = parse_duration_ms(&block_duration)?;
            let bar = super::progress_bar(0, "create-from-openmetrics");
            bar.set_message(format!("reading {}", input.display()));
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            bar.set_message(format!("parsing {} bytes", text.len()));
            let series =
                parse_exposition(&text).with_context(|| format!("parsing {}", input.display()))?;
            std::fs::create_dir_all(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            bar.set_message(format!("writing blocks of {} series", series.len()));
            let metas = write_blocks(&output, series, range, CutOptions::default(), None);
            bar.finish_and_clear();
            let metas = metas?;
            for m in metas {
                println!(
                    "{}\t{}\t{}\tseries={}\tsamples={}\tchunks={}",
                    m.ulid,
                    m.min_time,
                    m.max_time,
                    m.stats.num_series,
                    m.stats.num_samples,
                    m.stats.num_chunks
                );
            }
            Ok(())
        }
    }
}

fn open_blocks(dir: &Path) -> anyhow::Result<Vec<Block>> {
    let dirs = block_dirs(dir)?;
    dirs.iter()
        .map(|d| Block::open(d).with_context(|| format!("opening block {}", d.display())))
        .collect()
}

fn run_dump(dir: &Path, selectors: &[String], min_time: i64, max_time: i64) -> anyhow::Result<()> {
    let blocks = open_blocks(dir)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let selectors = selectors
        .iter()
        .map(|s| parse_selector(s).with_context(|| format!("--match {s}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = DumpOptions {
        selectors,
        min_time,
        max_time,
    };
    dump(&blocks, &opts, &mut out)?;
    out.flush()?;
    Ok(())
}

fn run_inspect(dir: &Path, sample: bool, top: usize) -> anyhow::Result<()> {
    if sample && (!dir.exists() || block_dirs(dir)?.is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let meta = super::sample::write_sample_block(dir)?;
        println!("wrote sample block {} into {}\n", meta.ulid, dir.display());
    }
    let blocks = open_blocks(dir)?;
    if blocks.is_empty() {
        bail!(
            "no blocks in {} (a block is a directory with meta.json)",
            dir.display()
        );
    }
    for b in &blocks {
        let m = b.meta();
        let r = inspect(b)?;
        println!("block {}", m.ulid);
        println!(
            "  time range     [{}, {}) ms, {:.2} h",
            m.min_time,
            m.max_time,
            (m.max_time - m.min_time) as f64 / 3.6e6
        );
        println!("  level          {}", m.compaction.level);
        println!("  series         {}", r.series);
        println!("  chunks         {}", r.chunks);
        println!("  samples        {}", r.samples);
        println!("  histogram chunks  {}", r.histogram_chunks);
        println!("  histogram samples {}", r.histogram_samples);
        println!("  bytes/sample   {:.3}", r.bytes_per_sample());
        println!("  index bytes    {}", r.index_bytes);
        println!("  segment bytes  {}", r.segment_bytes);
        println!("  label names    {}", r.labels.len());
        for l in r.labels.iter().take(top) {
            println!(
                "    {:<32} {:>8} values {:>10} series",
                l.name, l.values, l.series
            );
        }
        println!();
    }
    Ok(())
}

/// Parses a Prometheus duration (`90s`, `2h`, `1h30m`, `1d`) into ms.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        bail!("empty duration");
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit_ms: i64 = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            'y' => 365 * 86_400_000,
            _ => bail!("invalid duration {s:?}"),
        };
        let n: i64 = num
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        num.clear();
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .with_context(|| format!("duration {s:?} overflows"))?;
    }
    if !num.is_empty() {
        bail!("duration {s:?} lacks a unit");
    }
    if total <= 0 {
        bail!("duration {s:?} must be positive");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("2").is_err());
        assert!(parse_duration_ms("x").is_err());
    }
}
