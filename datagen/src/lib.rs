//! A deterministic generator of realistic metric data: node_exporter-like, kube-state-metrics-like
//! and application metrics, scraped target by target in time order, with counter resets, gauge
//! plateaus, classic histograms and pod churn (series that end with a stale marker and series
//! that start mid-range). Outputs are OpenMetrics text and blocks (see [`output`]).

mod native;
mod output;
mod remote_write;
mod rng;
mod target;

use std::fmt;
use std::ops::Range;

use gauntlet_engine::labels::Labels;

pub use native::{NATIVE_METRIC, NativeSeries, native_series, write_native_blocks};
pub use output::{
    BATCH_BUDGET_BYTES, Batches, batch_targets, collect_series, write_blocks_dir,
    write_blocks_dir_batched, write_blocks_dir_with, write_openmetrics,
};
pub use remote_write::encode_write_request;

use rng::Rng;
use target::Target;

/// Which metric families the generator emits for every target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    /// node_exporter-like: cpu, memory, filesystem, network.
    pub node: bool,
    /// kube-state-metrics-like: pod phases and container restarts, with churn.
    pub kube: bool,
    /// Application metrics: request counters, a classic histogram, an in-flight gauge.
    pub app: bool,
}

impl Families {
    /// The families named in `names` (`node`, `kube`, `app`).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Families, String> {
        let mut f = Families {
            node: false,
            kube: false,
            app: false,
        };
        for name in names {
            match name.as_ref().trim() {
                "node" => f.node = true,
                "kube" => f.kube = true,
                "app" => f.app = true,
                other => {
                    return Err(format!(
                        "unknown family {other:?} (expected node, kube or app)"
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl Default for Families {
    fn default() -> Self {
        Families {
            node: true,
            kube: true,
            app: true,
        }
    }
}

/// Knobs of a generated data set.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Number of scraped targets (hosts); each carries every enabled family.
    pub targets: usize,
    /// Scrape interval, ms.
    pub scrape_interval_ms: i64,
    /// Start of the data, ms since the epoch; every sample lies in `[start_ms, start_ms + duration_ms)`.
    pub start_ms: i64,
    /// Length of the data, ms.
    pub duration_ms: i64,
    /// Pods are replaced every this many ms; 0 disables churn.
    pub churn_every_ms: i64,
    /// Share of a target's pods replaced at each churn, in [0, 1].
    pub churn_fraction: f64,
    /// Seed; the same config gives the same data, bit for bit.
    pub seed: u64,
    /// Which families to emit.
    pub families: Families,
    /// Pods per target in the kube family (6 series each); this is the knob for series per
    /// target: a target has 99 node and app series plus 6 per pod (147 at the default 8).
    pub pods_per_target: usize,
}

impl GenConfig {
    /// Checks every knob's range; [`Generator::new`] calls this too.
    pub fn validate(&self) -> Result<(), GenError> {
        let cfg = self;
        let bad = |m: &str| Err(GenError::InvalidConfig(m.to_string()));
        if cfg.scrape_interval_ms < 10 {
            return bad("scrape interval must be at least 10 ms");
        }
        if cfg.duration_ms < 0 {
            return bad("duration must not be negative");
        }
        if cfg.churn_every_ms < 0 {
            return bad("churn interval must not be negative");
        }
        if !(0.0..=1.0).contains(&cfg.churn_fraction) {
            return bad("churn fraction must lie in [0, 1]");
        }
        if cfg.pods_per_target > 10_000 {
            return bad("at most 10000 pods per target");
        }
        if cfg.targets > 100_000 {
            return bad("at most 100000 targets");
        }
        if cfg
            .start_ms
            .checked_add(cfg.duration_ms)
            .and_then(|e| e.checked_add(cfg.scrape_interval_ms))
            .is_none()
        {
            return bad("start + duration overflows");
        }
        Ok(())
    }
}

impl Default for GenConfig {
    /// 20 targets scraped every 15 s for 2 h from 2023-11-14T22:00:00Z (a 2 h boundary),
    /// churning 25% of pods every 30 min: about 3 700 series and 1.4 M samples.
    fn default() -> Self {
        GenConfig {
            targets: 20,
            scrape_interval_ms: 15_000,
            start_ms: 1_699_999_200_000,
            duration_ms: 2 * 3_600_000,
            churn_every_ms: 30 * 60_000,
            churn_fraction: 0.25,
            seed: 1,
            families: Families::default(),
            pods_per_target: 8,
        }
    }
}

/// Why a [`GenConfig`] cannot be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// A knob is out of range; the message names it. Fix the config.
    #[error("invalid generator config: {0}")]
    InvalidConfig(String),
    /// Writing an output (the OpenMetrics stream, the blocks directory) failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Gauntlet's block writer failed (its error names the path).
    #[error("writing blocks: {0}")]
    Blocks(#[from] gauntlet_engine::Error),
}

/// The metric type of a family, as written in `# TYPE` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic counter (samples end in `_total`).
    Counter,
    /// Gauge.
    Gauge,
    /// Classic histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        })
    }
}

/// A metric family: its OpenMetrics name (without `_total` for counters), type and help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// Family name as in `# TYPE` lines.
    pub name: &'static str,
    /// Metric type.
    pub kind: MetricType,
    /// Help text.
    pub help: &'static str,
}

/// A series the generator has started.
#[derive(Clone, Debug)]
pub struct SeriesInfo {
    /// Labels, including `__name__`.
    pub labels: Labels,
    /// The series as written on an OpenMetrics sample line: `name{a="b",...}`.
    pub text: String,
}

/// One generated sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Index into [`Generator::series`].
    pub series: u32,
    /// Timestamp, ms.
    pub ts_ms: i64,
    /// Value; a stale marker (NaN with bits `STALE_NAN_BITS`) ends a series.
    pub value: f64,
}

/// Registry of started series, shared by all targets.
#[derive(Debug, Default)]
pub(crate) struct SeriesSet {
    series: Vec<SeriesInfo>,
}

impl SeriesSet {
    /// Starts a series named `name` with `pairs` as its other labels; returns its index.
    pub(crate) fn add(&mut self, name: &str, pairs: &[(&str, &str)]) -> u32 {
        let mut sorted: Vec<(&str, &str)> = pairs.to_vec();
        sorted.sort_unstable();
        let mut text = String::with_capacity(96);
        text.push_str(name);
        text.push('{');
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(k);
            text.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => text.push_str("\\\\"),
                    '"' => text.push_str("\\\""),
                    '\n' => text.push_str("\\n"),
                    c => text.push(c),
                }
            }
            text.push('"');
        }
        text.push('}');
        let labels = Labels::from_pairs(
            std::iter::once(("__name__", name))
                .chain(sorted.iter().copied())
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.series.push(SeriesInfo { labels, text });
        (self.series.len() - 1) as u32
    }
}

/// Produces the data of a [`GenConfig`] one scrape at a time, in order of scrape time.
#[derive(Debug)]
pub struct Generator {
    cfg: GenConfig,
    set: SeriesSet,
    /// Targets in order of their offset within the scrape interval.
    targets: Vec<Target>,
    round: i64,
    rounds: i64,
    next_target: usize,
}

impl Generator {
    /// Checks `cfg` and sets up every target's initial series.
    pub fn new(cfg: &GenConfig) -> Result<Self, GenError> {
        Self::for_targets(cfg, 0..cfg.targets)
    }

    /// A generator of the targets in `targets` (indices into `0..cfg.targets`) alone. A
    /// target's series and samples depend only on the seed and its index (each draws from its
    /// own random stream), so the targets of `cfg` split into ranges give, range by range,
    /// exactly the data of [`Generator::new`]; only the series' indices differ.
    pub fn for_targets(cfg: &GenConfig, targets: Range<usize>) -> Result<Self, GenError> {
        cfg.validate()?;
        if targets.end > cfg.targets {
            return Err(GenError::InvalidConfig(format!(
                "targets {}..{} out of the config's {}",
                targets.start, targets.end, cfg.targets
            )));
        }
        let mut set = SeriesSet::default();
        let mut targets: Vec<Target> = targets.map(|i| Target::new(cfg, i, &mut set)).collect();
        targets.sort_by_key(|t| t.offset_ms);
        Ok(Generator {
            rounds: (cfg.duration_ms + cfg.scrape_interval_ms - 1) / cfg.scrape_interval_ms,
            cfg: cfg.clone(),
            set,
            targets,
            round: 0,
            next_target: 0,
        })
    }

    /// The families this config emits, in output order.
    pub fn families(&self) -> Vec<Family> {
        let f = self.cfg.families;
        let mut out = Vec::new();
        if f.node {
            out.extend_from_slice(target::NODE_FAMILIES);
        }
        if f.kube {
            out.extend_from_slice(target::KUBE_FAMILIES);
        }
        if f.app {
            out.extend_from_slice(target::APP_FAMILIES);
        }
        out
    }

    /// Every series started so far, indexed by [`Sample::series`].
    pub fn series(&self) -> &[SeriesInfo] {
        &self.set.series
    }

    /// Appends the samples of the next scrape to `out` and returns true, or returns false when
    /// the data is complete. Each series' samples come in increasing time.
    pub fn next_scrape(&mut self, out: &mut Vec<Sample>) -> bool {
        loop {
            if self.round >= self.rounds || self.targets.is_empty() {
                return false;
            }
            if self.next_target == self.targets.len() {
                self.next_target = 0;
                self.round += 1;
                continue;
            }
            let t = &mut self.targets[self.next_target];
            self.next_target += 1;
            let ts = self.cfg.start_ms
                + self.round * self.cfg.scrape_interval_ms
                + t.offset_ms
                + t.jitter_ms();
            if ts >= self.cfg.start_ms + self.cfg.duration_ms {
                continue;
            }
            t.scrape(&self.cfg, ts, &mut self.set, out);
            return true;
        }
    }
}

/// A fresh stream for `cfg`'s seed; `stream` keeps targets independent of each other.
pub(crate) fn rng_for(cfg: &GenConfig, stream: u64) -> Rng {
    Rng::new(cfg.seed, stream)
}
