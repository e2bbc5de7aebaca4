//! The side-by-side runner: one command per scenario starts Prometheus 3.x (and Gauntlet, when
//! the component exists) on loopback over the same input, measures both the same way, and
//! appends a row to `perf/RESULTS.md`. See `perf/README.md` for the methods.

pub mod current;
pub mod engine_stream;
mod ingest;
mod report;
mod scenarios;
pub mod series;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use crate::datagen::GenConfig;

pub use ingest::ingest;
pub use report::{Figures, machine_description, record};
pub use scenarios::{compact, count_samples, histogram, query};

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
    /// Results file to append to; `None` prints the row only.
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
