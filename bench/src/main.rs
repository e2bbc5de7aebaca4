//! `gauntlet-bench`: Gauntlet's measuring tools. `gen` writes realistic generated metric data as
//! OpenMetrics text, blocks or remote-write requests; `load` drives a server with remote writes
//! or queries; `run` measures Gauntlet and Prometheus side by side (see `perf/README.md`);
//! `readme-figures` renders the README's headline figures from `perf/RESULTS.md`.

mod cli;

use mimalloc::MiMalloc;

/// The allocator the server runs with, so in-process figures (`engine-stream`) are the
/// server's.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gauntlet_bench::datagen::{self, Families, GenConfig, write_openmetrics};
use gauntlet_bench::remote_write::{encode_stream, write_frames};

#[derive(Parser)]
#[command(name = "gauntlet-bench", about = "Gauntlet's measuring tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generates realistic metric data.
    #[command(subcommand)]
    Gen(GenCmd),
    /// Drives a server with remote writes or queries.
    #[command(subcommand)]
    Load(cli::LoadCmd),
    /// Runs a side-by-side scenario, appends its section to perf/history/YYYY-MM.md and
    /// rewrites its rows of the current tables in perf/RESULTS.md.
    #[command(subcommand)]
    Run(Box<cli::RunCmd>),
    /// Renders the README's headline figures from perf/RESULTS.md's current tables: prints
    /// them, writes them between the README's figures markers (`--write`) or exits non-zero
    /// when the README's differ (`--check`).
    ReadmeFigures(cli::ReadmeFiguresCmd),
    /// Streams every series matching a selector from a FILESYSTEM bucket in-process (the
    /// bucket store without gRPC) and prints series/s, CPU, peak RSS and index-header sizes.
    EngineStream {
        /// The bucket directory (blocks from `gen blocks`).
        #[arg(long)]
        bucket: PathBuf,
        /// Directory for index-headers.
        #[arg(long, default_value = "target/engine-stream")]
        data_dir: PathBuf,
        /// Series selector.
        #[arg(long = "match", default_value = "{__name__=~\".+\"}")]
        selector: String,
        /// I/O backend of the engine cores: auto, io-uring or pread.
        #[arg(long, default_value = "auto")]
        io_backend: gauntlet_engine::shard::IoChoice,
        /// Passes; the best is reported (the first warms the caches).
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Write the series as the StoreAPI frames the server sends, this many series per
        /// `SeriesResponse` (`response_batch_size`; 1 = one per message), and count their
        /// bytes.
        #[arg(long)]
        frames: Option<i64>,
    },
    /// Streams every series matching a selector from a running StoreAPI endpoint (a tonic
    /// client), or from a Prometheus remote-read endpoint with `--remote-read`, and prints
    /// series/s and bytes per pass.
    SeriesStream {
        /// `http://host:port` of the StoreAPI (gRPC) or of Prometheus.
        #[arg(long)]
        url: String,
        /// Ask Prometheus's remote read (STREAMED_XOR_CHUNKS) instead of the StoreAPI.
        #[arg(long)]
        remote_read: bool,
        /// Series selector.
        #[arg(long = "match", default_value = "{__name__=~\".+\"}")]
        selector: String,
        /// Start, ms (default: all time).
        #[arg(long, default_value_t = i64::MIN)]
        min_time: i64,
        /// End, ms inclusive (default: all time).
        #[arg(long, default_value_t = i64::MAX)]
        max_time: i64,
        /// Passes.
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Series per StoreAPI answer message to ask for (`response_batch_size`; 0 = one per
        /// message, as queriers before batching ask).
        #[arg(long, default_value_t = gauntlet_bench::runner::series::RESPONSE_BATCH)]
        response_batch_size: i64,
    },
}

#[derive(Subcommand)]
enum GenCmd {
    /// Writes OpenMetrics text, as `promtool tsdb create-blocks-from openmetrics` reads it.
    Openmetrics {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        knobs: Knobs,
    },
    /// Writes remote-write 1.0 requests (snappy protobuf, batched as Prometheus does) as frames:
    /// a 4-byte little-endian length, then the request body.
    RemoteWrite {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        knobs: Knobs,
        #[command(flatten)]
        batch: cli::BatchArgs,
    },
    /// Writes 2 h blocks into a directory with Gauntlet's block writer, a batch of targets at
    /// a time (each batch's blocks merged into one per 2 h range), so memory stays bounded
    /// whatever the number of targets.
    Blocks {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        knobs: Knobs,
        /// Targets generated at a time; 0 generates all at once. Default: as many as fit about
        /// 1 GiB of samples and labels.
        #[arg(long)]
        batch_targets: Option<usize>,
        /// Where the batches' blocks wait to be merged (default: under --out); a tmpfs such as
        /// /dev/shm spares the disk a second copy of the output for a while.
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
pub(crate) struct Knobs {
    /// Number of scraped targets (147 series each with all families and 8 pods).
    #[arg(long, default_value_t = 20)]
    targets: usize,
    /// Scrape interval, seconds.
    #[arg(long, default_value_t = 15.0)]
    interval: f64,
    /// Start time, ms since the epoch.
    #[arg(long, default_value_t = 1_699_999_200_000)]
    start_ms: i64,
    /// Duration, hours.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Pod churn period, minutes; 0 disables churn.
    #[arg(long, default_value_t = 30.0)]
    churn_minutes: f64,
    /// Share of pods replaced at each churn, in [0, 1].
    #[arg(long, default_value_t = 0.25)]
    churn_fraction: f64,
    /// Seed; the same seed and knobs give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Families to emit, comma-separated: node, kube, app.
    #[arg(long, default_value = "node,kube,app", value_delimiter = ',')]
    families: Vec<String>,
    /// Pods per target (6 series each): the series-per-target knob; a target has 99 node and
    /// app series plus 6 per pod.
    #[arg(long, default_value_t = 8)]
    pods_per_target: usize,
}

impl Knobs {
    pub(crate) fn config(&self) -> anyhow::Result<GenConfig> {
        let families = Families::from_names(&self.families).map_err(anyhow::Error::msg)?;
        let cfg = GenConfig {
            targets: self.targets,
            scrape_interval_ms: (self.interval * 1000.0).round() as i64,
            start_ms: self.start_ms,
            duration_ms: (self.hours * 3_600_000.0).round() as i64,
            churn_every_ms: (self.churn_minutes * 60_000.0).round() as i64,
            churn_fraction: self.churn_fraction,
            seed: self.seed,
            families,
            pods_per_target: self.pods_per_target,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A spinner with the elapsed time on stderr while generation runs (nothing when stderr is no
/// terminal); cleared when dropped.
struct Spinner(indicatif::ProgressBar);

impl Spinner {
    fn start(msg: String) -> Spinner {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Spinner(indicatif::ProgressBar::hidden());
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("gen {spinner} {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_message(msg);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Spinner(bar)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn main() -> anyhow::Result<()> {
    // The server's allocator settings, so in-process figures are the server's.
    gauntlet_engine::alloc::tune();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Gen(GenCmd::Openmetrics { out, knobs }) => {
            let cfg = knobs.config()?;
            let _spinner = Spinner::start(format!("writing {}", out.display()));
            let start = Instant::now();
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let n = write_openmetrics(&cfg, file)
                .with_context(|| format!("writing {}", out.display()))?;
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "wrote {n} samples to {} in {secs:.2} s ({:.0} samples/s)",
                out.display(),
                n as f64 / secs
            );
        }
        Cmd::Gen(GenCmd::Blocks {
            out,
            knobs,
            batch_targets,
            scratch,
        }) => {
            let cfg = knobs.config()?;
            let batches = datagen::Batches {
                targets: batch_targets.unwrap_or_else(|| datagen::batch_targets(&cfg)),
                scratch,
            };
            let _spinner = Spinner::start(format!(
                "writing blocks under {}, {} targets at a time",
                out.display(),
                batches.targets
            ));
            let start = Instant::now();
            let metas = datagen::write_blocks_dir_batched(&cfg, &out, None, &batches)
                .with_context(|| format!("writing blocks under {}", out.display()))?;
            let secs = start.elapsed().as_secs_f64();
            let samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
            eprintln!(
                "wrote {} blocks ({samples} samples) under {} in {secs:.2} s ({:.0} samples/s)",
                metas.len(),
                out.display(),
                samples as f64 / secs
            );
        }
        Cmd::Gen(GenCmd::RemoteWrite { out, knobs, batch }) => {
            let cfg = knobs.config()?;
            let _spinner = Spinner::start(format!("writing {}", out.display()));
            let start = Instant::now();
            let stream = encode_stream(&cfg, &batch.config(1)?)?;
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let bytes = write_frames(&stream, std::io::BufWriter::new(file))
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} requests ({} samples, {} stale markers, {} series, {bytes} bytes) to {} in {:.2} s",
                stream.requests.len(),
                stream.samples,
                stream.stale_markers,
                stream.series,
                out.display(),
                start.elapsed().as_secs_f64()
            );
        }
        Cmd::Load(cmd) => cli::load(cmd)?,
        Cmd::Run(cmd) => cli::run(*cmd)?,
        Cmd::ReadmeFigures(cmd) => cli::readme_figures(&cmd)?,
        Cmd::SeriesStream {
            url,
            remote_read,
            selector,
            min_time,
            max_time,
            passes,
            response_batch_size,
        } => {
            use gauntlet_bench::runner::series;
            let sel = series::Selection::parse(&selector, min_time, max_time)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            for _ in 0..passes.max(1) {
                let r = rt.block_on(async {
                    if remote_read {
                        series::remote_read(&url, &sel, None).await
                    } else {
                        series::store_series(&url, &sel, response_batch_size, None).await
                    }
                })?;
                println!(
                    "{} series, {} chunks, {} chunk bytes, {} bytes received in {:.3} s: {:.0} series/s{}",
                    r.series,
                    r.chunks,
                    r.chunk_bytes,
                    r.wire_bytes,
                    r.seconds,
                    r.series as f64 / r.seconds,
                    if r.warnings.is_empty() {
                        String::new()
                    } else {
                        format!("; warnings: {:?}", r.warnings)
                    }
                );
            }
        }
        Cmd::EngineStream {
            bucket,
            data_dir,
            selector,
            io_backend,
            passes,
            frames,
        } => {
            let r = gauntlet_bench::runner::engine_stream::measure(
                &bucket, &data_dir, &selector, io_backend, passes, frames,
            )?;
            println!(
                "{} series, {} chunks, {} {} bytes in {:.3} s: {:.0} series/s; CPU {:.2} s; peak RSS {} MiB; io {}; index-header bytes per block {:?}",
                r.series,
                r.chunks,
                r.chunk_bytes,
                if frames.is_some() { "frame" } else { "chunk" },
                r.seconds,
                r.series as f64 / r.seconds,
                r.cpu_s,
                r.peak_rss_bytes >> 20,
                r.backend,
                r.header_bytes
            );
        }
    }
    Ok(())
}
