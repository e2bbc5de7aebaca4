//! The scenarios `query` and `histogram` (a query file over the same blocks), and what every
//! scenario shares: starting Prometheus and Gauntlet, generating and copying blocks, naming the
//! input, counting what a server holds. Sides run one after the other so none competes with
//! another for cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::datagen::{GenConfig, write_blocks_dir};
use crate::load::query as qload;

use super::current::{Figure, Recorded};
use super::report::{Figures, render_sides};
use super::server::{Server, free_port, gauntlet_cmd, gauntlet_has, prometheus_cmd, version_of};
use super::{RunError, RunOptions};

pub(super) const READY_WAIT: Duration = Duration::from_secs(120);

/// Times each query of the file runs alone (one at a time) for its per-query latency.
const SEQUENTIAL_RUNS: usize = 3;

/// Path of the Prometheus binary: given, or fetched with `prometheus.sh current`.
pub(super) fn prometheus_bin(o: &RunOptions) -> Result<PathBuf, RunError> {
    if let Some(b) = &o.prometheus_bin {
        return Ok(b.clone());
    }
    let dir = o.work_dir.join("prometheus3");
    let out = Command::new("bash")
        .arg(&o.prometheus_script)
        .arg("current")
        .arg(&dir)
        .output()?;
    if !out.status.success() {
        return Err(RunError::Start(format!(
            "{} current failed: {}",
            o.prometheus_script.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

pub(super) fn prometheus_name(bin: &Path) -> String {
    let v = version_of(bin);
    // "prometheus, version 3.5.3+ds1 (branch: …)" → "prometheus 3.5.3+ds1"
    v.split_whitespace()
        .nth(2)
        .map_or(v.clone(), |ver| format!("prometheus {ver}"))
}

/// Starts the baseline: the external endpoint, or Prometheus over `data` with `extra` flags.
pub(super) fn baseline(
    o: &RunOptions,
    name: &str,
    data: &Path,
    extra: &[String],
) -> Result<Server, RunError> {
    if let Some(u) = &o.baseline_url {
        return Ok(Server::external("baseline (external)", u, o.baseline_pid));
    }
    let bin = prometheus_bin(o)?;
    let port = free_port()?;
    let dir = o.work_dir.join(format!("{name}-prometheus"));
    std::fs::create_dir_all(&dir)?;
    let cmd = prometheus_cmd(&bin, &dir, data, port, extra)?;
    Server::start(
        &prometheus_name(&bin),
        cmd,
        format!("http://127.0.0.1:{port}"),
        &dir.join("log.txt"),
        READY_WAIT,
    )
}

/// Starts the target: the external endpoint, or Gauntlet's `subcommand` when it exists.
pub(super) fn target(
    o: &RunOptions,
    name: &str,
    subcommand: &str,
    default_args: &str,
    data: &Path,
) -> Result<Option<Server>, RunError> {
    target_with(o, name, subcommand, default_args, data, &[])
}

/// [`target`] with more placeholders filled in its arguments (`{rw}`: a port, say).
pub(super) fn target_with(
    o: &RunOptions,
    name: &str,
    subcommand: &str,
    default_args: &str,
    data: &Path,
    fill: &[(&str, String)],
) -> Result<Option<Server>, RunError> {
    if let Some(u) = &o.target_url {
        return Ok(Some(Server::external("target (external)", u, o.target_pid)));
    }
    let Some(bin) = &o.gauntlet_bin else {
        return Ok(None);
    };
    let args = o.gauntlet_args.as_deref().unwrap_or(default_args);
    let sub = args.split_whitespace().next().unwrap_or(subcommand);
    if !gauntlet_has(bin, sub) {
        eprintln!(
            "{}: no `{sub}` subcommand yet; measuring Prometheus alone",
            bin.display()
        );
        return Ok(None);
    }
    let (http, grpc) = (free_port()?, free_port()?);
    let dir = o.work_dir.join(format!("{name}-gauntlet"));
    std::fs::create_dir_all(&dir)?;
    let mut all_fill = vec![
        ("http", http.to_string()),
        ("grpc", grpc.to_string()),
        ("data", data.display().to_string()),
    ];
    all_fill.extend(fill.iter().cloned());
    let cmd = gauntlet_cmd(bin, args, &o.gauntlet_extra_args, &all_fill);
    Server::start(
        &gauntlet_name(bin, sub),
        cmd,
        format!("http://127.0.0.1:{http}"),
        &dir.join("log.txt"),
        READY_WAIT,
    )
    .map(Some)
}

/// Starts Gauntlet's `subcommand` with `args`, then `extra` (say the `--gauntlet-arg`s), on
/// free loopback `--http-address` and `--grpc-address`, its log in `<work dir>/<dir>/log.txt`;
/// returns it and its gRPC address (`127.0.0.1:PORT`, as `--endpoint` names it).
pub(super) fn start_gauntlet(
    o: &RunOptions,
    dir: &str,
    subcommand: &str,
    args: &[String],
    extra: &[String],
) -> Result<(Server, String), RunError> {
    let bin = o
        .gauntlet_bin
        .as_ref()
        .ok_or_else(|| RunError::Start("no Gauntlet binary (--gauntlet-bin)".into()))?;
    let (http, grpc) = (free_port()?, free_port()?);
    let log_dir = o.work_dir.join(dir);
    std::fs::create_dir_all(&log_dir)?;
    let mut cmd = Command::new(bin);
    cmd.arg(subcommand)
        .args(args)
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .args(extra);
    let s = Server::start(
        &gauntlet_name(bin, subcommand),
        cmd,
        format!("http://127.0.0.1:{http}"),
        &log_dir.join("log.txt"),
        READY_WAIT,
    )?;
    Ok((s, format!("127.0.0.1:{grpc}")))
}

/// `gauntlet VERSION` for `all` (the name earlier runs recorded), `gauntlet SUBCOMMAND VERSION`
/// for a component.
pub(super) fn gauntlet_name(bin: &Path, subcommand: &str) -> String {
    let version = version_of(bin);
    let v = version.split_whitespace().last().unwrap_or("");
    if subcommand == "all" {
        format!("gauntlet {v}")
    } else {
        format!("gauntlet {subcommand} {v}")
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Starts the baseline over a copy of the generated blocks in `src`, with flags that make
/// Prometheus serve them as they are (no compaction, no retention).
pub(super) fn baseline_over_blocks(
    o: &RunOptions,
    scenario: &str,
    src: &Path,
) -> Result<Server, RunError> {
    let pdata = o.work_dir.join(format!("{scenario}-prometheus-data"));
    let _ = std::fs::remove_dir_all(&pdata);
    if o.baseline_url.is_none() {
        copy_tree(src, &pdata)?;
        let _ = std::fs::remove_file(pdata.join("done"));
    }
    baseline(o, scenario, &pdata, &over_blocks_flags())
}

/// Prometheus's flags over copied blocks: no compaction (min = max block duration, as beside a
/// sidecar) and no retention deleting old generated data.
pub(super) fn over_blocks_flags() -> [String; 3] {
    [
        "--storage.tsdb.min-block-duration=2h".to_string(),
        "--storage.tsdb.max-block-duration=2h".to_string(),
        "--storage.tsdb.retention.time=100y".to_string(),
    ]
}

/// Copies the blocks under `src` into `dst` (created).
pub(super) fn copy_tree(src: &Path, dst: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), to)?;
        }
    }
    Ok(())
}

pub(super) fn input_text(o: &RunOptions) -> String {
    let g = &o.data;
    format!(
        "generator seed {}, {} targets × {} pods, {} s scrapes over {} min, churn {}% every {} min{}",
        g.seed,
        g.targets,
        g.pods_per_target,
        g.scrape_interval_ms / 1000,
        g.duration_ms / 60_000,
        (g.churn_fraction * 100.0).round(),
        g.churn_every_ms / 60_000,
        families_text(g, ", families ")
    )
}

/// The generator's families after `prefix` when they are not the default (all three).
fn families_text(g: &crate::datagen::GenConfig, prefix: &str) -> String {
    let f = g.families;
    if f == crate::datagen::Families::default() {
        return String::new();
    }
    let names: Vec<&str> = [(f.node, "node"), (f.kube, "kube"), (f.app, "app")]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
    format!("{prefix}{}", names.join(","))
}

/// Counts the samples queryable in `[start_ms, end_ms]` with `count_over_time`, one query per
/// metric name (without the name, series of different metrics could share a label set, which
/// PromQL refuses in one vector). Stale markers are not counted, as PromQL skips them.
pub fn count_samples(server: &Server, start_ms: i64, end_ms: i64) -> Result<f64, RunError> {
    count_per_name(server, start_ms, end_ms, "sum(count_over_time")
}

/// Counts the series with a sample in `[start_ms, end_ms]` with `count(last_over_time(…))`, one
/// query per metric name, for servers whose own series gauge does not tell (a Thanos Receive
/// that has cut its head into a block at start).
pub fn count_series(server: &Server, start_ms: i64, end_ms: i64) -> Result<f64, RunError> {
    count_per_name(server, start_ms, end_ms, "count(last_over_time")
}

/// The sum over metric names of `outer({__name__="…"}[range]))` at `end_ms`, the range
/// reaching back to `start_ms`; `outer` opens two parentheses (`sum(count_over_time`).
fn count_per_name(
    server: &Server,
    start_ms: i64,
    end_ms: i64,
    outer: &str,
) -> Result<f64, RunError> {
    let json = |path: &str| -> Result<serde_json::Value, RunError> {
        let (status, body) = server.get(path)?;
        if status != 200 {
            return Err(RunError::Other(format!(
                "{path}: status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|e| RunError::Other(format!("{path}: {e}")))
    };
    let names = json(&format!(
        "/api/v1/label/__name__/values?start={}&end={}",
        start_ms / 1000,
        end_ms / 1000 + 1
    ))?;
    let mut total = 0.0;
    for name in names["data"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let name = name.as_str().unwrap_or_default();
        let q = format!(
            "{outer}({{__name__=\"{name}\"}}[{}ms]))",
            end_ms - start_ms + 1
        );
        let v = json(&format!(
            "/api/v1/query?time={}.{:03}&query={}",
            end_ms / 1000,
            end_ms % 1000,
            urlenc(&q)
        ))?;
        if let Some(x) = v["data"]["result"][0]["value"][1].as_str() {
            total += x.parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok(total)
}

fn urlenc(s: &str) -> String {
    let mut out = String::new();
    crate::load::http::urlencode(s, &mut out);
    out
}

/// Generates the blocks of `o.data` under the work dir (reused when already there).
pub(super) fn blocks(o: &RunOptions) -> Result<PathBuf, RunError> {
    blocks_of(o, &o.data)
}

/// Generates the blocks of `g` under the work dir (reused when already there); the directory
/// is named by the knobs (and the start, when it is not the default).
pub(super) fn blocks_of(o: &RunOptions, g: &GenConfig) -> Result<PathBuf, RunError> {
    let start = if g.start_ms == GenConfig::default().start_ms {
        String::new()
    } else {
        format!("-a{}", g.start_ms)
    };
    let dir = o.work_dir.join(format!(
        "blocks-s{}-t{}-p{}-i{}-d{}-c{}{}{start}",
        g.seed,
        g.targets,
        g.pods_per_target,
        g.scrape_interval_ms,
        g.duration_ms,
        g.churn_every_ms,
        families_text(g, "-")
    ));
    if !dir.join("done").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let metas = write_blocks_dir(g, &dir)?;
        std::fs::write(dir.join("done"), "")?;
        eprintln!(
            "wrote {} blocks in {:.1} s",
            metas.len(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(dir)
}

/// A bucket under the work dir named `name` holding, for each external label set of `copies`,
/// a copy of every block of `src` with those labels in its Thanos section (see
/// [`relabelled_copy`]): what sidecars of as many Prometheus servers (or clusters) scraping the
/// same targets would upload. Reused when already complete.
pub(super) fn thanos_bucket(
    src: &Path,
    bucket: &Path,
    copies: &[Vec<(String, String)>],
) -> Result<PathBuf, RunError> {
    let done = bucket.with_extension("done");
    if done.exists() {
        return Ok(bucket.to_path_buf());
    }
    let _ = std::fs::remove_dir_all(bucket);
    std::fs::create_dir_all(bucket)?;
    let t = Instant::now();
    let blocks = block_dirs_in(src);
    for labels in copies {
        for b in &blocks {
            relabelled_copy(b, bucket, labels)?;
        }
    }
    std::fs::write(&done, "")?;
    eprintln!(
        "made {} blocks ({} label sets × {}) in {} in {:.1} s",
        copies.len() * blocks.len(),
        copies.len(),
        blocks.len(),
        bucket.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(bucket.to_path_buf())
}

/// The block directories (those holding a `meta.json`) under `dir`, sorted by name.
pub(super) fn block_dirs_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    out.sort();
    out
}

/// Copies the block `block` into `bucket` as a new block: a fresh ULID (its own only source),
/// and a Thanos section with the external labels `labels` and source `sidecar`. Its index and
/// chunk files are hard links to the original's (copied where linking fails), so a bucket of
/// many copies costs little disk; readers and compactors never write to a block's files.
pub(super) fn relabelled_copy(
    block: &Path,
    bucket: &Path,
    labels: &[(String, String)],
) -> Result<PathBuf, RunError> {
    use gauntlet_engine::block::{BlockMeta, ThanosMeta};
    let bad = |e: gauntlet_engine::block::BlockError| RunError::Other(e.to_string());
    let mut meta = BlockMeta::read(block).map_err(bad)?;
    let id = ulid::Ulid::new();
    meta.ulid = id;
    meta.compaction.sources = vec![id];
    meta.thanos = Some(ThanosMeta {
        version: 1,
        labels: labels.iter().cloned().collect(),
        source: "sidecar".into(),
        ..ThanosMeta::default()
    });
    let dst = bucket.join(id.to_string());
    link_tree(block, &dst)?;
    std::fs::remove_file(dst.join("meta.json"))?;
    meta.write(&dst).map_err(bad)?;
    Ok(dst)
}

/// Hard-links every file under `src` into `dst` (created), copying where linking fails.
fn link_tree(src: &Path, dst: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            link_tree(&e.path(), &to)?;
        } else if std::fs::hard_link(e.path(), &to).is_err() {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// A FILESYSTEM objstore file for `bucket` at `path`, as Thanos and Gauntlet read it.
pub(super) fn objstore_file(path: &Path, bucket: &Path) -> Result<PathBuf, RunError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        path,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )?;
    Ok(path.to_path_buf())
}

pub(super) fn block_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter(|e| e.path().join("meta.json").exists())
                .count()
        })
        .unwrap_or(0)
}

/// The input as the current table names it: the generator's knobs, any `--gauntlet-arg`s,
/// then `series`, the series of each block or of the data (`680 targets × 8 pods, 2 h (124k
/// series)`). Rows are matched on the part before the parenthesis.
pub(super) fn input_name(o: &RunOptions, series: &[u64]) -> String {
    let g = &o.data;
    let span = if g.duration_ms >= 3_600_000 {
        format!("{} h", g.duration_ms as f64 / 3_600_000.0)
    } else {
        format!("{} min", g.duration_ms / 60_000)
    };
    let mut name = format!(
        "{} targets × {} pods, {span}{}",
        g.targets,
        g.pods_per_target,
        families_text(g, ", families ")
    );
    if g.scrape_interval_ms != GenConfig::default().scrape_interval_ms {
        // Fewer samples a series: another input than the same targets at 15 s.
        name.push_str(&format!(
            ", {} s scrapes",
            g.scrape_interval_ms as f64 / 1000.0
        ));
    }
    if let Some(rate) = o.rate {
        // A paced run is its own input: both sides take the same samples.
        name.push_str(&format!(", at {} samples/s", short_count(rate as u64)));
    }
    if !o.gauntlet_extra_args.is_empty() {
        name.push_str(&format!(
            ", Gauntlet with `{}`",
            o.gauntlet_extra_args.join(" ")
        ));
    }
    name.push_str(&series_suffix(series));
    name
}

/// The part of an input's name after its knobs: ` (124k series)` for one block (or one data
/// set), ` (12 blocks, up to 14.7k series each)` for several, nothing for none.
pub(super) fn series_suffix(series: &[u64]) -> String {
    match series {
        [] => String::new(),
        [n] => format!(" ({} series)", short_count(*n)),
        many => format!(
            " ({} blocks, up to {} series each)",
            many.len(),
            short_count(many.iter().copied().max().unwrap_or(0))
        ),
    }
}

/// The series of each block under `dir`, from their `meta.json`.
pub(super) fn block_series(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("meta.json")).ok())
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        .filter_map(|m| m["stats"]["numSeries"].as_u64())
        .collect()
}

/// A count as the tables name sizes: `1.16M`, `124k`, `3700`.
pub(super) fn short_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{}k", (n as f64 / 1e3).round()),
        n => n.to_string(),
    }
}

/// The figures of a side-by-side table for the current table: throughput, latency, peak RSS.
pub(super) fn side_figures(unit: &str, base: &Figures, target: Option<&Figures>) -> Vec<Figure> {
    all_side_figures(unit, Some(base), target, None, None)
}

/// [`side_figures`] with every side: Prometheus (`base`), Gauntlet (`target`), Thanos and
/// VictoriaMetrics, each when it ran.
pub(super) fn all_side_figures(
    unit: &str,
    base: Option<&Figures>,
    target: Option<&Figures>,
    thanos: Option<&Figures>,
    victoria: Option<&Figures>,
) -> Vec<Figure> {
    let rss = |f: &Figures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
    let each = |v: fn(&Figures) -> Option<f64>| {
        [base, target, thanos, victoria].map(|side| side.and_then(v))
    };
    let figure = |name: &str, [p, g, t, vm]: [Option<f64>; 4], decimals| {
        Figure::new(name, g, p, decimals).with_peers(t, vm)
    };
    let mut out = vec![figure(unit, each(|f| Some(f.throughput)), 1)];
    if [base, target, thanos, victoria]
        .iter()
        .flatten()
        .any(|f| f.p50_ms > 0.0)
    {
        out.push(figure("latency p50, ms", each(|f| Some(f.p50_ms)), 1));
        out.push(figure("latency p99, ms", each(|f| Some(f.p99_ms)), 1));
    }
    out.push(figure("peak RSS, MiB", each(rss), 0));
    out
}

/// `query` and `series`: the query file against each side over the same blocks, one warm-up
/// pass, then `duration` of load at `concurrency`; when both sides ran, every query is also
/// compared (differential mode) and the differences counted.
pub fn query(o: &RunOptions, scenario: &'static str) -> Result<Recorded, RunError> {
    let src = blocks(o)?;
    query_over(
        o,
        scenario,
        &src,
        &input_text(o),
        input_name(o, &block_series(&src)),
        Some(&o.data),
    )
}

/// `histogram`: the `query` scenario over native histograms. The generator's native histogram
/// series (`http_request_duration_seconds`, schema 3, one per target, pod and handler; see
/// `datagen::native`) are written as 2 h blocks of histogram chunks cut as Prometheus's head
/// cuts them; Prometheus and `gauntlet all` serve the same blocks, and the query file (by
/// default `perf/queries/histogram.txt`) runs against both as in `query`.
pub fn histogram(o: &RunOptions) -> Result<Recorded, RunError> {
    let g = &o.data;
    let dir = o.work_dir.join(format!(
        "native-blocks-s{}-t{}-p{}-i{}-d{}",
        g.seed, g.targets, g.pods_per_target, g.scrape_interval_ms, g.duration_ms,
    ));
    if !dir.join("done").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let metas = crate::datagen::write_native_blocks(g, &dir, 2 * 3_600_000)?;
        std::fs::write(dir.join("done"), "")?;
        eprintln!(
            "wrote {} native histogram blocks in {:.1} s",
            metas.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let text = format!(
        "generator seed {}, native histograms (schema 3) of {} targets × {} pods × 4 handlers, \
         {} s scrapes over {} min",
        g.seed,
        g.targets,
        g.pods_per_target,
        g.scrape_interval_ms / 1000,
        g.duration_ms / 60_000,
    );
    let series = block_series(&dir);
    let span = g.duration_ms as f64 / 3_600_000.0;
    let mut name = format!(
        "native histograms, {} targets × {} pods × 4 handlers, {span} h",
        g.targets, g.pods_per_target
    );
    if let Some(n) = series.iter().copied().max() {
        name.push_str(&format!(" ({} series)", short_count(n)));
    }
    query_over(o, "histogram", &dir, &text, name, None)
}

/// The query load of a query file: what every query of it needs, for any server.
pub(super) struct QueryLoad {
    /// The queries, in file order.
    pub queries: Vec<qload::QuerySpec>,
    /// The data's time range the queries' times are relative to, ms.
    pub start_ms: i64,
    /// End of the data, ms.
    pub end_ms: i64,
    /// Queries in flight.
    pub concurrency: usize,
    /// Load time per server.
    pub duration: Duration,
}

impl QueryLoad {
    /// The query file of `o` over `o.data`'s time range.
    pub(super) fn of(o: &RunOptions) -> Result<QueryLoad, RunError> {
        let text = std::fs::read_to_string(&o.queries)
            .map_err(|e| RunError::Other(format!("{}: {e}", o.queries.display())))?;
        Ok(QueryLoad {
            queries: qload::parse_queries(&text)?,
            start_ms: o.data.start_ms,
            end_ms: o.data.start_ms + o.data.duration_ms,
            concurrency: o.concurrency,
            duration: o.duration,
        })
    }

    fn options(&self, url: &str) -> qload::QueryOptions {
        qload::QueryOptions {
            url: url.to_string(),
            data_start_ms: self.start_ms,
            data_end_ms: self.end_ms,
            concurrency: self.concurrency,
            duration: Some(self.duration),
            count: None,
            timeout: Duration::from_secs(120),
        }
    }

    /// One warm-up pass through the file, then `duration` at `concurrency` against `s`:
    /// queries/s, latency, the server's CPU over the load and its peak RSS so far.
    pub(super) fn measure(&self, s: &Server) -> Result<Figures, RunError> {
        let warm = qload::QueryOptions {
            count: Some(self.queries.len() as u64),
            duration: None,
            ..self.options(&s.url)
        };
        qload::run(&self.queries, &warm)?;
        let before = s.stats();
        let rep = qload::run(&self.queries, &self.options(&s.url))?;
        let after = s.stats();
        eprintln!("{}:\n{}", s.name, rep.render());
        let mut notes = format!("{} queries, {} bytes", rep.queries, rep.bytes);
        for (c, n) in &rep.non_2xx {
            notes.push_str(&format!("; {n}× HTTP {c}"));
        }
        if let Some(e) = &rep.first_error {
            notes.push_str(&format!(
                "; first error: {}",
                e.replace('|', "/").chars().take(120).collect::<String>()
            ));
        }
        Ok(Figures {
            system: s.name.clone(),
            throughput: rep.queries as f64 / rep.elapsed_s,
            p50_ms: rep.latency_p50_ms,
            p99_ms: rep.latency_p99_ms,
            cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
            peak_rss_bytes: after.map(|a| a.peak_rss_bytes),
            notes,
        })
    }

    /// Latency of each query alone, [`SEQUENTIAL_RUNS`] times, the servers taking turns query
    /// by query so a change in the machine's load hits all alike; the median per server and
    /// query, ms.
    pub(super) fn alone(&self, servers: &[&Server]) -> Result<Vec<Vec<f64>>, RunError> {
        let mut runs = vec![vec![Vec::new(); self.queries.len()]; servers.len()];
        for _ in 0..SEQUENTIAL_RUNS {
            for (i, q) in self.queries.iter().enumerate() {
                for (k, s) in servers.iter().enumerate() {
                    let rep = qload::run(
                        std::slice::from_ref(q),
                        &qload::QueryOptions {
                            concurrency: 1,
                            count: Some(1),
                            duration: None,
                            ..self.options(&s.url)
                        },
                    )?;
                    if let Some(e) = &rep.first_error {
                        eprintln!("{}: line {}: {e}", s.name, q.line);
                    }
                    runs[k][i].push(rep.per_query.first().map_or(f64::NAN, |p| p.1));
                }
            }
        }
        Ok(runs
            .into_iter()
            .map(|side| side.into_iter().map(|mut v| median(&mut v)).collect())
            .collect())
    }

    /// Every query sent once to `a` and to `b`, compared; the differences.
    pub(super) fn diff(
        &self,
        a: &Server,
        b: &Server,
    ) -> Result<Vec<crate::load::diff::Difference>, RunError> {
        Ok(qload::run_diff(
            &self.queries,
            &self.options(&a.url),
            &b.url,
            1e-6,
        )?)
    }
}

/// The median of `v` (sorted in place); NaN when empty.
pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `query` scenario's measurements over the blocks in `src`; `input` describes them in the
/// section, `input_name` names them in the current table. With `vm_data` (the generator's
/// settings of those blocks), VictoriaMetrics answers the same queries over the same data
/// imported through its remote-write endpoint; with a Thanos binary, the queriers are compared
/// over one `gauntlet store` of the blocks (see [`super::querier`]).
fn query_over(
    o: &RunOptions,
    scenario: &'static str,
    src: &Path,
    input: &str,
    input_name: String,
    vm_data: Option<&GenConfig>,
) -> Result<Recorded, RunError> {
    let load = QueryLoad::of(o)?;
    let queries = &load.queries;
    let b = baseline_over_blocks(o, scenario, src)?;
    let base = load.measure(&b)?;
    let gdata = o.work_dir.join(format!("{scenario}-gauntlet-data"));
    let _ = std::fs::remove_dir_all(&gdata);
    if o.target_url.is_none() && o.gauntlet_bin.is_some() {
        copy_tree(src, &gdata)?;
        let _ = std::fs::remove_file(gdata.join("done"));
    }
    let t = target(
        o,
        scenario,
        "all",
        "all --data-dir={data} --http-address=127.0.0.1:{http} --grpc-address=127.0.0.1:{grpc} --remote-write.address=127.0.0.1:0",
        &gdata,
    )?;
    let mut tgt = None;
    if let Some(t) = &t {
        let mut f = load.measure(t)?;
        let diffs = load.diff(&b, t)?;
        f.notes.push_str(&format!(
            "; {} of {} queries differ from the baseline",
            diffs.len(),
            queries.len()
        ));
        for d in diffs.iter().take(20) {
            eprintln!("differs: line {} `{}`: {}", d.line, d.expr, d.what);
        }
        tgt = Some(f);
    }
    let sides = match &t {
        Some(t) => load.alone(&[&b, t])?,
        None => load.alone(&[&b])?,
    };
    drop(t);
    drop(b);
    // The peers after Prometheus and Gauntlet have stopped: one process at a time.
    let vm = match vm_data {
        Some(g) if o.victoria_bin.is_some() => Some(super::querier::victoria_side(o, g, &load)?),
        _ => None,
    };
    let queriers = super::querier::queriers(o, src, &load)?;
    let (per_query, medians) = per_query_table(queries, &sides[0], sides.get(1).map(Vec::as_slice));
    let vm_median = vm.as_ref().map(|(_, alone)| median(&mut alone.clone()));
    let vm_fig = vm.as_ref().map(|(f, _)| f);
    // VictoriaMetrics: speed only (its memory holds what the import left, not comparable).
    let mut figures = all_side_figures(
        &format!("queries/s at concurrency {}", o.concurrency),
        Some(&base),
        tgt.as_ref(),
        None,
        vm_fig,
    );
    if let Some(rss) = figures.iter_mut().find(|f| f.name == "peak RSS, MiB") {
        rss.victoria = None;
    }
    figures.insert(
        3,
        Figure::new(
            "median latency of the queries run alone, ms",
            medians.1,
            medians.0,
            1,
        )
        .with_peers(None, vm_median),
    );
    let mut section = render_sides(
        scenario,
        "queries/s",
        &format!(
            "{}; {} blocks; {} ({} queries); per side one warm-up pass, then {} s at \
             concurrency {}; then each query alone {SEQUENTIAL_RUNS} times, the sides taking turns",
            input,
            block_count(src),
            o.queries.display(),
            queries.len(),
            o.duration.as_secs(),
            o.concurrency,
        ),
        &o.command_line,
        Some(&base),
        tgt.as_ref(),
        vm_fig.into_iter().cloned().collect::<Vec<_>>().as_slice(),
    );
    if let Some((f, alone)) = &vm {
        section.push_str(&format!(
            "\n{} answered the same queries over the same samples imported through its \
             remote-write endpoint (`-search.disableCache`, `-search.latencyOffset=0s`), alone \
             after the others stopped; its answers are not compared (MetricsQL differs from \
             PromQL in places), its peak RSS holds what the import left. Median of its queries \
             run alone: {:.1} ms.\n",
            f.system,
            median(&mut alone.clone())
        ));
    }
    section.push_str(&per_query);
    if let Some(q) = &queriers {
        section.push_str(&q.render(queries));
        figures.extend(q.figures(o.concurrency));
    }
    Ok(Recorded {
        scenario,
        input: input_name,
        section,
        figures,
    })
}

/// The per-query latencies of both sides (median of the sequential runs) with each query's
/// speed-up (baseline / target), and the set's median speed-up and median latencies.
/// The per-query table, and the median latency over the set of each side (baseline, target).
fn per_query_table(
    queries: &[qload::QuerySpec],
    base: &[f64],
    target: Option<&[f64]>,
) -> (String, (Option<f64>, Option<f64>)) {
    use std::fmt::Write as _;
    let mut s = format!(
        "\nPer query, each run alone (median of {SEQUENTIAL_RUNS} runs, the sides taking turns \
         query by query), ms:\n\n\
         | line | query | baseline | target | speed-up |\n|---|---|---|---|---|\n"
    );
    let mut ratios = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let kind = match q.kind {
            qload::QueryKind::Instant { .. } => "instant",
            qload::QueryKind::Range { .. } => "range",
            qload::QueryKind::Series { .. } => "series",
        };
        let b = base.get(i).copied().unwrap_or(f64::NAN);
        let t = target.and_then(|t| t.get(i).copied());
        let ratio = t.filter(|&t| t > 0.0).map(|t| b / t);
        ratios.extend(ratio);
        let _ = writeln!(
            s,
            "| {} | {kind} `{}` | {b:.1} | {} | {} |",
            q.line,
            q.expr.replace('|', "\\|"),
            t.map_or("n/a".into(), |t| format!("{t:.1}")),
            ratio.map_or("n/a".into(), |r| format!("{r:.1}x")),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied()
    };
    let mut b: Vec<f64> = base.to_vec();
    let mut t: Vec<f64> = target.map(<[f64]>::to_vec).unwrap_or_default();
    let (mb, mt) = (median(&mut b), median(&mut t));
    let _ = writeln!(
        s,
        "\nMedian over the set: baseline {:.1} ms, target {}; median speed-up {}.",
        mb.unwrap_or(f64::NAN),
        mt.map_or("n/a".into(), |x| format!("{x:.1} ms")),
        median(&mut ratios).map_or("n/a".into(), |x| format!("{x:.1}x")),
    );
    (s, (mb, mt))
}

#[cfg(test)]
mod tests {
    use super::short_count;

    #[test]
    fn counts_are_shortened() {
        assert_eq!(short_count(1_162_800), "1.16M");
        assert_eq!(short_count(116_280), "116k");
        assert_eq!(short_count(3_700), "3700");
    }
}
