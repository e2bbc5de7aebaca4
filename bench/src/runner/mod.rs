//! The side-by-side runner: one command per scenario starts Prometheus 3.x, Gauntlet (when the
//! component exists) and, where they play the role, upstream Thanos's components and
//! VictoriaMetrics single-node on loopback over the same input, measures them the same way, one
//! after the other, appends a dated section to the month's file in `perf/history/` and rewrites
//! its scenario's rows of the current tables in `perf/RESULTS.md`. See `perf/README.md` for the
//! methods.

mod compact;
pub mod current;
pub mod engine_stream;
mod frontend;
mod ingest;
mod parquet;
pub mod peers;
mod querier;
pub mod readme_figures;
mod report;
mod rules;
mod scenarios;
pub mod series;
pub mod server;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use crate::datagen::GenConfig;

pub use compact::compact;
pub use frontend::{FrontendOptions, frontend};
pub use ingest::ingest;
pub use parquet::{ParquetOptions, parquet};
pub use report::{Figures, history_file, machine_description, record, record_as};
pub use rules::{RulesOptions, rules};
pub use scenarios::{count_samples, histogram, query};
pub use store::{StoreOptions, store};

/// Why a scenario could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A server did not start or become ready; the message names its log file.
    #[error("starting a server: {0}")]
    Start(String),
    /// Generating the input failed.
    #[error(transparent)]
    Gen(#[from] crate::datagen::GenError),
    /// The load generator failed.
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    /// File or process I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Anything else; the message says what.
    #[error("{0}")]
    Other(String),
}

/// Which side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The incumbent (Prometheus 3.x, or an external endpoint such as a Thanos component).
    Baseline,
    /// Gauntlet (started here, or an external endpoint).
    Target,
}

/// Options shared by every scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Prometheus binary; when `None`, `prometheus_script current <work_dir>/prometheus3` is
    /// run to fetch Prometheus 3.x.
    pub prometheus_bin: Option<PathBuf>,
    /// `prometheus.sh` (see `perf/README.md`).
    pub prometheus_script: PathBuf,
    /// Gauntlet binary; without it (and without `target_url`) Prometheus is measured alone.
    pub gauntlet_bin: Option<PathBuf>,
    /// Arguments for Gauntlet replacing the scenario's default; `{http}`, `{grpc}` and
    /// `{data}` are replaced by the ports and data directory.
    pub gauntlet_args: Option<String>,
    /// Arguments appended to Gauntlet's (default or replaced) arguments, with the same
    /// placeholders (`--gauntlet-arg`, repeatable).
    pub gauntlet_extra_args: Vec<String>,
    /// Upstream Thanos binary (`thanos`); Thanos's components are measured when given.
    pub thanos_bin: Option<PathBuf>,
    /// VictoriaMetrics single-node binary; measured where it plays the role when given.
    pub victoria_bin: Option<PathBuf>,
    /// Endpoint of an already running target instead of starting Gauntlet.
    pub target_url: Option<String>,
    /// Its process id, for process figures when it runs here.
    pub target_pid: Option<u32>,
    /// Endpoint of an already running baseline instead of starting Prometheus.
    pub baseline_url: Option<String>,
    /// Its process id.
    pub baseline_pid: Option<u32>,
    /// Scratch directory for data and logs.
    pub work_dir: PathBuf,
    /// Results file whose current tables a run rewrites (its section goes to
    /// `history/YYYY-MM.md` beside it); `None` prints the section and rows only.
    pub results: Option<PathBuf>,
    /// Results file whose current table holds the last recorded figures (read even when
    /// nothing is appended).
    pub recorded: PathBuf,
    /// The generated input.
    pub data: GenConfig,
    /// Remote-write connections (ingest).
    pub connections: usize,
    /// How long to load each side (ingest, query, series).
    pub duration: Duration,
    /// Remote-write rate, samples/s; `None` is flat out (ingest).
    pub rate: Option<f64>,
    /// Query file (query, series).
    pub queries: PathBuf,
    /// Queries in flight (query, series).
    pub concurrency: usize,
    /// The command line, for the results row.
    pub command_line: String,
}
