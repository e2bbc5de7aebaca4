//! The `load`, `run` and `readme-figures` subcommands' flags and how they map onto the library.

mod readme_figures;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gauntlet_bench::load::query::{QueryOptions, parse_duration, parse_queries};
use gauntlet_bench::load::{query as qload, remote_write as rwload};
use gauntlet_bench::remote_write::{BatchConfig, encode_stream};
use gauntlet_bench::runner::{self, RunOptions};

use crate::Knobs;

pub(crate) use readme_figures::{ReadmeFiguresCmd, readme_figures};

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .filter(|&ms| ms > 0)
        .map(|ms| Duration::from_millis(ms as u64))
        .ok_or_else(|| format!("bad duration {s:?} (e.g. 30s, 5m)"))
}

/// How remote-write requests are batched.
#[derive(Args, Clone)]
pub(crate) struct BatchArgs {
    /// Samples per request (Prometheus's queue_config.max_samples_per_send).
    #[arg(long, default_value_t = 2000)]
    max_samples_per_send: usize,
    /// External label `name=value` added to every series; repeatable.
    #[arg(long = "external-label")]
    external_labels: Vec<String>,
}

impl BatchArgs {
    pub(crate) fn config(&self, shards: usize) -> anyhow::Result<BatchConfig> {
        let mut external_labels = Vec::new();
        for l in &self.external_labels {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("external label {l:?} is not name=value"))?;
            external_labels.push((k.to_string(), v.to_string()));
        }
        Ok(BatchConfig {
            max_samples_per_send: self.max_samples_per_send,
            shards,
            external_labels,
            ..BatchConfig::default()
        })
    }
}

#[derive(Subcommand)]
pub(crate) enum LoadCmd {
    /// Remote-writes generated data over keep-alive connections, flat out or at a rate.
    RemoteWrite {
        /// Receiver URL, e.g. http://127.0.0.1:9090/api/v1/write.
        #[arg(long)]
        url: String,
        /// Keep-alive HTTP/1.1 connections (one shard each).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Samples per second over all connections; flat out when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// How long to send.
        #[arg(long, default_value = "30s", value_parser = duration)]
        duration: Duration,
        /// Move the data so it starts this long before now (keeps it inside the receiver's
        /// accepted window).
        #[arg(long, default_value = "1h", value_parser = duration)]
        start_before_now: Duration,
        #[command(flatten)]
        knobs: Knobs,
        #[command(flatten)]
        batch: BatchArgs,
    },
    /// Runs a query file against a Prometheus-compatible HTTP API (format in perf/README.md).
    Query {
        /// Base URL of the HTTP API, e.g. http://127.0.0.1:9090.
        #[arg(long)]
        url: String,
        /// Query file.
        #[arg(long, default_value = "perf/queries/default.txt")]
        queries: PathBuf,
        /// Queries in flight.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Stop after this long.
        #[arg(long, value_parser = duration)]
        duration: Option<Duration>,
        /// Stop after this many queries (the file is cycled); once through the file when
        /// neither this nor --duration is given.
        #[arg(long)]
        count: Option<u64>,
        /// Start of the data the query times are relative to, ms since the epoch.
        #[arg(long, default_value_t = 1_699_999_200_000)]
        data_start_ms: i64,
        /// End of the data, ms since the epoch.
        #[arg(long, default_value_t = 1_699_999_200_000 + 2 * 3_600_000)]
        data_end_ms: i64,
        /// Differential mode: send every query to this API too and report each answer that
        /// differs beyond the tolerance; exits non-zero when any does.
        #[arg(long)]
        diff: Option<String>,
        /// Relative tolerance of the differential mode.
        #[arg(long, default_value_t = 1e-6)]
        tolerance: f64,
    },
}

#[derive(Subcommand)]
pub(crate) enum RunCmd {
    /// Remote write flat out for a fixed time, then count what is queryable.
    Ingest {
        #[command(flatten)]
        common: RunArgs,
        /// Remote-write connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Samples per second; flat out when absent.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// The query file over the same blocks.
    Query {
        #[command(flatten)]
        common: RunArgs,
        /// Query file.
        #[arg(long, default_value = "perf/queries/default.txt")]
        queries: PathBuf,
        /// Queries in flight.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    /// PromQL over native histograms: Prometheus and `gauntlet all` over the same generated
    /// blocks of native histogram series (schema 3, one per target, pod and handler), each
    /// query of the file run at concurrency and alone, answers compared.
    Histogram {
        #[command(flatten)]
        common: RunArgs,
        /// Query file.
        #[arg(long, default_value = "perf/queries/histogram.txt")]
        queries: PathBuf,
        /// Queries in flight.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    /// Streaming every series matching high-cardinality selectors: `gauntlet store` over the
    /// StoreAPI against Prometheus over remote read (STREAMED_XOR_CHUNKS), same blocks.
    Series {
        #[command(flatten)]
        common: RunArgs,
        /// A selector to stream (repeatable); default: `{__name__=~"kube_pod.*"}`,
        /// `{job="node"}`, `{__name__="kube_pod_status_phase"}`.
        #[arg(long = "match")]
        selectors: Vec<String>,
        /// Measured passes per selector (after one warm-up pass); the best is reported.
        #[arg(long, default_value_t = 3)]
        passes: usize,
    },
    /// Prometheus merging the generated 2 h blocks into larger ones, against `gauntlet
    /// compact`; with a Thanos binary also `thanos compact` against `gauntlet compact`, one
    /// pass each over an HA pair's bucket (dedup by `replica`, downsampling).
    Compact {
        #[command(flatten)]
        common: RunArgs,
    },
    /// Prometheus-on-Parquet reads: `gauntlet store` over Parquet files against
    /// prometheus-community/parquet-common's reader (through `parquet-peer`) on the same files,
    /// parquet-common's own `BenchmarkSelect` data and cases, with the TSDB form beside them.
    Parquet {
        #[command(flatten)]
        common: RunArgs,
        /// Instances of the data set: 5 metrics × instances × 3,000 series (parquet-common's
        /// benchmark: 100, 1.5M series).
        #[arg(long, default_value_t = 100)]
        instances: usize,
        /// Measured passes per case (after one warm-up pass); the best is reported.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// The `parquet-peer` binary; default: `.tools/peers/bin/parquet-peer` (or under
        /// `$GAUNTLET_PEERS_BIN`).
        #[arg(long)]
        parquet_peer_bin: Option<PathBuf>,
    },
    /// The store gateway: `gauntlet store` against `thanos store` over the same bucket, each
    /// from an empty data directory and behind its own `thanos query`.
    Store {
        #[command(flatten)]
        common: RunArgs,
        /// Copies of the generated blocks in the bucket, each with its own external label
        /// `cluster` (hard links: no disk beyond the first): blocks × copies blocks.
        #[arg(long, default_value_t = 1)]
        copies: usize,
        /// Query file run through each store's `thanos query`.
        #[arg(long, default_value = "perf/queries/default.txt")]
        queries: PathBuf,
        /// Queries in flight.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// A selector to stream straight from each store over gRPC (repeatable); default as
        /// `run series`.
        #[arg(long = "match")]
        selectors: Vec<String>,
        /// Measured passes per selector (after one warm-up pass); the best is reported.
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Longest one Series pass may take before its selection is recorded as timed out.
        #[arg(long, default_value = "10m", value_parser = duration)]
        pass_timeout: Duration,
    },
    /// Recording rules: Prometheus 3.x (`rule_files`) and `gauntlet all` (`--rule-file`) evaluate
    /// the same rule file every 15 s over the same remote-written series (a history ending now,
    /// kept current for a warm-up); CPU and evaluation time per round are measured over a window
    /// with no ingest.
    Rules {
        #[command(flatten)]
        common: RunArgs,
        /// Recording rules (15 templates per host, host by host).
        #[arg(long, default_value_t = 10_000)]
        rules: usize,
        /// Rules per group.
        #[arg(long, default_value_t = 100)]
        group_size: usize,
        /// Evaluation rounds measured (15 s each).
        #[arg(long, default_value_t = 8)]
        rounds: u32,
    },
    /// The query frontend: `gauntlet all --demo` with its frontend, and `thanos
    /// query-frontend` (with --thanos-bin) in front of the same API, both splitting by 24h
    /// and caching in memory; a 20-query dashboard over 7 days is loaded cold and refreshed,
    /// and one long query is asked whole and split. Needs loopback ports only.
    Frontend {
        #[command(flatten)]
        common: RunArgs,
        /// Days of demo history loaded (at least 7); also the long query's span.
        #[arg(long, default_value_t = 30)]
        history_days: u32,
        /// Dashboard refreshes measured after the cold load.
        #[arg(long, default_value_t = 3)]
        refreshes: u32,
        /// Time between refreshes.
        #[arg(long, default_value = "30s", value_parser = duration)]
        refresh_every: Duration,
        /// Times each long query is asked whole and through each frontend.
        #[arg(long, default_value_t = 5)]
        split_passes: usize,
    },
}

/// Flags every scenario shares. Data knobs default per scenario (see perf/README.md) unless
/// given.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// Prometheus binary; fetched with --prometheus-script when absent.
    #[arg(long)]
    prometheus_bin: Option<PathBuf>,
    /// The script that fetches Prometheus 3.x (`prometheus.sh current DIR`); the default is
    /// relative to the repository root, where the runner is started.
    #[arg(long, default_value = "tests/tools/prometheus.sh")]
    prometheus_script: PathBuf,
    /// Gauntlet binary; Prometheus is measured alone when absent or when it lacks the
    /// scenario's component.
    #[arg(long)]
    gauntlet_bin: Option<PathBuf>,
    /// Gauntlet arguments replacing the scenario's default; {http}, {grpc}, {data} are filled in.
    #[arg(long)]
    gauntlet_args: Option<String>,
    /// An argument appended to Gauntlet's (default or --gauntlet-args) arguments, e.g.
    /// `--gauntlet-arg=--engine.cores=1`; repeatable; {http}, {grpc}, {data} are filled in. The
    /// current table names the input with them, so such runs get rows of their own.
    #[arg(long = "gauntlet-arg", allow_hyphen_values = true)]
    gauntlet_arg: Vec<String>,
    /// Upstream Thanos binary, whose components are measured beside Gauntlet's (store,
    /// receive, compact, query); default: `.tools/peers/bin/thanos` (or under
    /// `$GAUNTLET_PEERS_BIN`) when it is there.
    #[arg(long)]
    thanos_bin: Option<PathBuf>,
    /// VictoriaMetrics single-node binary, measured in `ingest` and `query`; default:
    /// `.tools/peers/bin/victoria-metrics` when it is there.
    #[arg(long = "victoriametrics-bin")]
    victoriametrics_bin: Option<PathBuf>,
    /// Measure Prometheus and Gauntlet only, even when the peers are built.
    #[arg(long)]
    no_peers: bool,
    /// Use this running endpoint as the target instead of starting Gauntlet.
    #[arg(long)]
    target_url: Option<String>,
    /// Process id of the target, for CPU and RSS figures.
    #[arg(long)]
    target_pid: Option<u32>,
    /// Use this running endpoint as the baseline instead of starting Prometheus.
    #[arg(long)]
    baseline_url: Option<String>,
    /// Process id of the baseline.
    #[arg(long)]
    baseline_pid: Option<u32>,
    /// Scratch directory.
    #[arg(long, default_value = "target/perf-run")]
    work_dir: PathBuf,
    /// Results file whose current tables the run's rows replace; the run's dated section is
    /// appended to `history/YYYY-MM.md` beside it (the month of the run, UTC).
    #[arg(long, default_value = "perf/RESULTS.md")]
    results: PathBuf,
    /// Print the section and rows without writing either.
    #[arg(long)]
    no_append: bool,
    /// Load time per side.
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Targets (default per scenario).
    #[arg(long)]
    targets: Option<usize>,
    /// Hours of data (default per scenario).
    #[arg(long)]
    hours: Option<f64>,
    /// Scrape interval of the generated data, seconds (default 15); 60 keeps a 2 h block of
    /// 10M series (`--targets 55000`) at a few GB.
    #[arg(long)]
    interval: Option<f64>,
    /// Pods per target (6 series each); 8, or 75 for `series`.
    #[arg(long)]
    pods_per_target: Option<usize>,
    /// Metric families, comma-separated: node, kube, app (default all three).
    #[arg(long, value_delimiter = ',')]
    families: Vec<String>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl RunArgs {
    /// The Thanos binary to measure: given, else the built peer, unless `--no-peers`.
    fn thanos_bin(&self) -> Option<PathBuf> {
        if self.no_peers {
            return None;
        }
        self.thanos_bin
            .clone()
            .or_else(|| runner::peers::default_bin("thanos"))
    }

    /// The VictoriaMetrics binary to measure, as [`RunArgs::thanos_bin`].
    fn victoria_bin(&self) -> Option<PathBuf> {
        if self.no_peers {
            return None;
        }
        self.victoriametrics_bin
            .clone()
            .or_else(|| runner::peers::default_bin("victoria-metrics"))
    }

    fn options(
        &self,
        targets: usize,
        hours: f64,
        duration: Duration,
    ) -> anyhow::Result<RunOptions> {
        let mut data = gauntlet_bench::datagen::GenConfig {
            targets: self.targets.unwrap_or(targets),
            duration_ms: (self.hours.unwrap_or(hours) * 3_600_000.0).round() as i64,
            seed: self.seed,
            pods_per_target: self.pods_per_target.unwrap_or(8),
            ..Default::default()
        };
        if let Some(s) = self.interval {
            data.scrape_interval_ms = (s * 1000.0).round() as i64;
        }
        if !self.families.is_empty() {
            data.families = gauntlet_bench::datagen::Families::from_names(&self.families)
                .map_err(anyhow::Error::msg)?;
        }
        data.validate()?;
        // Short data sets still churn (twice), so the stream carries stale markers.
        data.churn_every_ms = data.churn_every_ms.min((data.duration_ms / 3).max(1));
        std::fs::create_dir_all(&self.work_dir)?;
        Ok(RunOptions {
            prometheus_bin: self.prometheus_bin.clone(),
            prometheus_script: self.prometheus_script.clone(),
            gauntlet_bin: self.gauntlet_bin.clone(),
            gauntlet_args: self.gauntlet_args.clone(),
            gauntlet_extra_args: self.gauntlet_arg.clone(),
            thanos_bin: self.thanos_bin(),
            victoria_bin: self.victoria_bin(),
            target_url: self.target_url.clone(),
            target_pid: self.target_pid,
            baseline_url: self.baseline_url.clone(),
            baseline_pid: self.baseline_pid,
            work_dir: std::path::absolute(&self.work_dir)?,
            results: (!self.no_append).then(|| self.results.clone()),
            recorded: self.results.clone(),
            data,
            connections: 4,
            duration: self.duration.unwrap_or(duration),
            rate: None,
            queries: PathBuf::new(),
            concurrency: 2,
            command_line: std::env::args()
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
                .collect::<Vec<_>>()
                .join(" "),
        })
    }
}

pub(crate) fn load(cmd: LoadCmd) -> anyhow::Result<()> {
    match cmd {
        LoadCmd::RemoteWrite {
            url,
            connections,
            rate,
            duration,
            start_before_now,
            knobs,
            batch,
        } => {
            anyhow::ensure!(connections > 0, "--connections must be positive");
            let cfg = knobs.config()?;
            let t = std::time::Instant::now();
            let stream = encode_stream(&cfg, &batch.config(connections)?)?;
            eprintln!(
                "encoded {} requests ({} series, {} samples) in {:.1} s; sending",
                stream.requests.len(),
                stream.series,
                stream.samples,
                t.elapsed().as_secs_f64()
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let start = (now - start_before_now.as_millis() as i64) / cfg.scrape_interval_ms
                * cfg.scrape_interval_ms;
            let rep = rwload::run(
                stream,
                &rwload::RemoteWriteOptions {
                    url,
                    rate,
                    duration,
                    timeout: Duration::from_secs(60),
                    time_shift_ms: start - cfg.start_ms,
                },
            )?;
            print!("{}", rep.render());
        }
        LoadCmd::Query {
            url,
            queries,
            concurrency,
            duration,
            count,
            data_start_ms,
            data_end_ms,
            diff,
            tolerance,
        } => {
            let text = std::fs::read_to_string(&queries)
                .with_context(|| format!("reading {}", queries.display()))?;
            let qs = parse_queries(&text)?;
            let opts = QueryOptions {
                url,
                data_start_ms,
                data_end_ms,
                concurrency,
                count: count.or(if duration.is_none() {
                    Some(qs.len() as u64)
                } else {
                    None
                }),
                duration,
                timeout: Duration::from_secs(120),
            };
            if let Some(b) = diff {
                let d = qload::run_diff(&qs, &opts, &b, tolerance)?;
                for x in &d {
                    println!("line {}: {}\n  {}", x.line, x.expr, x.what);
                }
                println!("{} of {} queries differ", d.len(), qs.len());
                anyhow::ensure!(d.is_empty(), "answers differ");
            } else {
                let rep = qload::run(&qs, &opts)?;
                print!("{}", rep.render());
                for (line, p50, n) in &rep.per_query {
                    println!("line {line}: p50 {p50:.2} ms over {n} runs");
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn run(cmd: RunCmd) -> anyhow::Result<()> {
    let (rec, o) = match cmd {
        RunCmd::Ingest {
            common,
            connections,
            rate,
        } => {
            // 680 targets × 147 series ≈ 100k series; 15 min of data, replayed as often as the
            // receiver takes it.
            let mut o = common.options(680, 0.25, Duration::from_secs(30))?;
            o.connections = connections;
            o.rate = rate;
            (runner::ingest(&o)?, o)
        }
        RunCmd::Query {
            common,
            queries,
            concurrency,
        } => {
            let mut o = common.options(100, 6.0, Duration::from_secs(60))?;
            o.queries = queries;
            o.concurrency = concurrency;
            (runner::query(&o, "query")?, o)
        }
        RunCmd::Histogram {
            common,
            queries,
            concurrency,
        } => {
            // 100 targets × 8 pods × 4 handlers: 3200 native histogram series over 6 h.
            let mut o = common.options(100, 6.0, Duration::from_secs(60))?;
            o.queries = queries;
            o.concurrency = concurrency;
            (runner::histogram(&o)?, o)
        }
        RunCmd::Series {
            mut common,
            selectors,
            passes,
        } => {
            // 200 targets × 75 pods: 178k series in one 2 h block (`--targets 2000` gives the
            // 1.78M-series block with a 1.32M-series metric).
            common.pods_per_target = common.pods_per_target.or(Some(75));
            let o = common.options(200, 2.0, Duration::from_secs(60))?;
            let selectors: Vec<String> = if selectors.is_empty() {
                runner::series::DEFAULT_SELECTORS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                selectors
            };
            (runner::series::series(&o, &selectors, passes)?, o)
        }
        RunCmd::Compact { common } => {
            // Thanos's planner leaves the newest block out and closes a window once a block
            // after it remains: 48 h and two 2 h blocks more make a 2-day block, which
            // downsampling needs.
            let hours = if common.thanos_bin().is_some() {
                52.0
            } else {
                24.0
            };
            let o = common.options(100, hours, Duration::from_secs(30))?;
            (runner::compact(&o)?, o)
        }
        RunCmd::Parquet {
            common,
            instances,
            passes,
            parquet_peer_bin,
        } => {
            anyhow::ensure!(instances > 0, "--instances must be positive");
            let o = common.options(1, 1.0, Duration::from_secs(60))?;
            let peer_bin = parquet_peer_bin
                .or_else(|| runner::peers::default_bin("parquet-peer"))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no parquet-peer binary: build it with `bash tests/peers/build.sh parquet-peer` or give --parquet-peer-bin"
                    )
                })?;
            let po = runner::ParquetOptions {
                instances,
                passes,
                peer_bin,
            };
            (runner::parquet(&o, &po)?, o)
        }
        RunCmd::Store {
            common,
            copies,
            queries,
            concurrency,
            selectors,
            passes,
            pass_timeout,
        } => {
            anyhow::ensure!(copies > 0, "--copies must be positive");
            // 680 targets × 8 pods: 124k series in one 2 h block.
            let mut o = common.options(680, 2.0, Duration::from_secs(30))?;
            o.queries = queries;
            o.concurrency = concurrency;
            let selectors = if selectors.is_empty() {
                runner::series::DEFAULT_SELECTORS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                selectors
            };
            let so = runner::StoreOptions {
                copies,
                selectors,
                passes,
                pass_timeout,
            };
            (runner::store(&o, &so)?, o)
        }
        RunCmd::Rules {
            common,
            rules,
            group_size,
            rounds,
        } => {
            // 680 targets × 147 series ≈ 100k series; a 10-minute history at 15 s, no churn, so
            // every series the rules select stays live.
            let mut o = common.options(680, 10.0 / 60.0, Duration::from_secs(60))?;
            o.data.churn_fraction = 0.0;
            let ro = runner::RulesOptions {
                rules,
                group_size,
                rounds,
            };
            (runner::rules(&o, &ro)?, o)
        }
        RunCmd::Frontend {
            common,
            history_days,
            refreshes,
            refresh_every,
            split_passes,
        } => {
            // The data is `all`'s demo, not the generator's; the data knobs are unused.
            let o = common.options(10, 1.0, Duration::from_secs(30))?;
            let fo = runner::FrontendOptions {
                history_days,
                refreshes,
                refresh_every,
                split_passes,
            };
            (runner::frontend(&o, &fo)?, o)
        }
    };
    runner::record(&rec, &o.recorded, o.results.is_some())?;
    Ok(())
}
