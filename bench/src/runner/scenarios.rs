//! The scenarios: `ingest` (remote write flat out, then count what is queryable), `query` and
//! `series` (a query file over the same blocks), `compact` (Prometheus merging the generated
//! 2 h blocks). Sides run one after the other so neither competes with the other for cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::datagen::write_blocks_dir;
use crate::load::query as qload;

use super::current::{Figure, Recorded};
use super::report::{Figures, render};
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

fn prometheus_name(bin: &Path) -> String {
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
    let cmd = gauntlet_cmd(
        bin,
        args,
        &o.gauntlet_extra_args,
        &[
            ("http", http.to_string()),
            ("grpc", grpc.to_string()),
            ("data", data.display().to_string()),
        ],
    );
    let version = version_of(bin);
    Server::start(
        &format!(
            "gauntlet {}",
            version.split_whitespace().last().unwrap_or("")
        ),
        cmd,
        format!("http://127.0.0.1:{http}"),
        &dir.join("log.txt"),
        READY_WAIT,
    )
    .map(Some)
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
    let extra = [
        "--storage.tsdb.min-block-duration=2h".to_string(),
        "--storage.tsdb.max-block-duration=2h".to_string(),
        "--storage.tsdb.retention.time=100y".to_string(),
    ];
    baseline(o, scenario, &pdata, &extra)
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
            "sum(count_over_time({{__name__=\"{name}\"}}[{}ms]))",
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
    let g = &o.data;
    let dir = o.work_dir.join(format!(
        "blocks-s{}-t{}-p{}-i{}-d{}-c{}{}",
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
    match series {
        [] => {}
        [n] => name.push_str(&format!(" ({} series)", short_count(*n))),
        many => name.push_str(&format!(
            " ({} blocks, up to {} series each)",
            many.len(),
            short_count(many.iter().copied().max().unwrap_or(0))
        )),
    }
    name
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
    let rss = |f: &Figures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
    let mut out = vec![Figure::new(
        unit,
        target.map(|t| t.throughput),
        Some(base.throughput),
        1,
    )];
    if base.p50_ms > 0.0 {
        out.push(Figure::new(
            "latency p50, ms",
            target.map(|t| t.p50_ms),
            Some(base.p50_ms),
            1,
        ));
        out.push(Figure::new(
            "latency p99, ms",
            target.map(|t| t.p99_ms),
            Some(base.p99_ms),
            1,
        ));
    }
    out.push(Figure::new(
        "peak RSS, MiB",
        target.and_then(rss),
        rss(base),
        0,
    ));
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
    query_over(o, "histogram", &dir, &text, name)
}

/// The `query` scenario's measurements over the blocks in `src`; `input` describes them in the
/// section, `input_name` names them in the current table.
fn query_over(
    o: &RunOptions,
    scenario: &'static str,
    src: &Path,
    input: &str,
    input_name: String,
) -> Result<Recorded, RunError> {
    let text = std::fs::read_to_string(&o.queries)
        .map_err(|e| RunError::Other(format!("{}: {e}", o.queries.display())))?;
    let queries = qload::parse_queries(&text)?;
    let (start, end) = (o.data.start_ms, o.data.start_ms + o.data.duration_ms);
    let qopts = |url: &str| qload::QueryOptions {
        url: url.to_string(),
        data_start_ms: start,
        data_end_ms: end,
        concurrency: o.concurrency,
        duration: Some(o.duration),
        count: None,
        timeout: Duration::from_secs(120),
    };
    let measure = |s: &Server| -> Result<Figures, RunError> {
        let warm = qload::QueryOptions {
            count: Some(queries.len() as u64),
            duration: None,
            ..qopts(&s.url)
        };
        qload::run(&queries, &warm)?;
        let before = s.stats();
        let rep = qload::run(&queries, &qopts(&s.url))?;
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
    };
    // Latency of each query alone, SEQUENTIAL_RUNS times, the sides taking turns query by
    // query so a change in the machine's load hits both alike; the median per side and query.
    let alone = |servers: &[&Server]| -> Result<Vec<Vec<f64>>, RunError> {
        let mut runs = vec![vec![Vec::new(); queries.len()]; servers.len()];
        for _ in 0..SEQUENTIAL_RUNS {
            for (i, q) in queries.iter().enumerate() {
                for (k, s) in servers.iter().enumerate() {
                    let rep = qload::run(
                        std::slice::from_ref(q),
                        &qload::QueryOptions {
                            concurrency: 1,
                            count: Some(1),
                            duration: None,
                            ..qopts(&s.url)
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
            .map(|side| {
                side.into_iter()
                    .map(|mut v| {
                        v.sort_by(|a, b| a.total_cmp(b));
                        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
                    })
                    .collect()
            })
            .collect())
    };
    let b = baseline_over_blocks(o, scenario, src)?;
    let base = measure(&b)?;
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
        let mut f = measure(t)?;
        let diffs = qload::run_diff(&queries, &qopts(&b.url), &t.url, 1e-6)?;
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
    let (per_query, medians) = match &t {
        Some(t) => {
            let sides = alone(&[&b, t])?;
            per_query_table(&queries, &sides[0], Some(&sides[1]))
        }
        None => per_query_table(&queries, &alone(&[&b])?[0], None),
    };
    drop(b);
    let mut figures = side_figures(
        &format!("queries/s at concurrency {}", o.concurrency),
        &base,
        tgt.as_ref(),
    );
    figures.insert(
        3,
        Figure::new(
            "median latency of the queries run alone, ms",
            medians.1,
            medians.0,
            1,
        ),
    );
    let section = render(
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
        &base,
        tgt.as_ref(),
    ) + &per_query;
    Ok(Recorded {
        scenario,
        input: input_name,
        section,
        figures,
    })
}

/// `compact`: Prometheus started over the generated 2 h blocks with a larger
/// `--storage.tsdb.max-block-duration` merges them by itself (its compaction loop runs about a
/// minute after start). Measured: the samples its compactions wrote (each logged step writes
/// the samples of the blocks its `sources` name, the generated blocks' counts from their
/// meta.json, earlier steps' from those steps) over the sum of the `duration` it logs for its
/// "compact blocks" steps, the process's CPU seconds and peak RSS from start until the
/// block set has been stable for 70 s after the last compaction (or `duration` × 10 at most).
/// Gauntlet: `gauntlet compact` over a filesystem bucket holding the same blocks, one pass;
/// the samples it wrote over the time its merges took (downloads and uploads through the
/// bucket not counted), CPU and peak RSS of the whole process. Each side plans by its own
/// levels (Prometheus 2 h × 3ⁿ, Thanos 2 h → 8 h → 2 d), so both are given per sample.
pub fn compact(o: &RunOptions) -> Result<Recorded, RunError> {
    let src = blocks(o)?;
    let before = block_count(&src);
    let pdata = o.work_dir.join("compact-prometheus-data");
    let _ = std::fs::remove_dir_all(&pdata);
    copy_tree(&src, &pdata)?;
    let _ = std::fs::remove_file(pdata.join("done"));
    let extra = [
        "--storage.tsdb.min-block-duration=2h".to_string(),
        "--storage.tsdb.max-block-duration=744h".to_string(),
        "--storage.tsdb.retention.time=100y".to_string(),
    ];
    let started = Instant::now();
    let mut b = baseline(o, "compact", &pdata, &extra)?;
    let limit = started + o.duration * 10;
    let mut last_change = Instant::now();
    let mut blocks_now = block_count(&pdata);
    let mut compactions = 0usize;
    let mut logged_s = 0.0;
    let mut written = 0.0;
    while Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(500));
        let n = block_count(&pdata);
        if n != blocks_now {
            blocks_now = n;
            last_change = Instant::now();
        }
        let log = b
            .log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("compact blocks"))
            .collect();
        if lines.len() != compactions {
            compactions = lines.len();
            last_change = Instant::now();
            logged_s = lines.iter().filter_map(|l| log_duration_s(l)).sum();
            written = samples_written(&src, &lines);
        }
        if compactions > 0 && last_change.elapsed() > Duration::from_secs(70) {
            break;
        }
    }
    let stats = b.stats();
    b.stop();
    let base = Figures {
        system: b.name.clone(),
        throughput: if logged_s > 0.0 {
            written / logged_s
        } else {
            0.0
        },
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_s: stats.map(|s| s.cpu_s),
        peak_rss_bytes: stats.map(|s| s.peak_rss_bytes),
        notes: format!(
            "{compactions} compaction steps logged taking {logged_s:.2} s in all, writing {written:.0} samples; {before} blocks → {blocks_now}; CPU and RSS are the whole process lifetime ({:.0} s)",
            started.elapsed().as_secs_f64()
        ),
    };
    let tgt = compact_gauntlet(o, &src, before)?;
    const UNIT: &str = "samples merged per compaction second";
    let section = render(
        "compact",
        UNIT,
        &format!("{}; {before} blocks of 2 h", input_text(o)),
        &o.command_line,
        &base,
        tgt.as_ref(),
    );
    Ok(Recorded {
        scenario: "compact",
        input: input_name(o, &[]),
        section,
        figures: side_figures(UNIT, &base, tgt.as_ref()),
    })
}

/// Gauntlet's side of `compact`: `gauntlet compact --wait` over a filesystem bucket holding a
/// copy of the blocks in `src`, stopped once its first pass is done.
fn compact_gauntlet(
    o: &RunOptions,
    src: &Path,
    before: usize,
) -> Result<Option<Figures>, RunError> {
    let bucket = o.work_dir.join("compact-gauntlet-bucket");
    let _ = std::fs::remove_dir_all(&bucket);
    copy_tree(src, &bucket)?;
    let scratch = o.work_dir.join("compact-gauntlet-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    let objstore = o.work_dir.join("compact-gauntlet-objstore.yml");
    std::fs::write(
        &objstore,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )?;
    let args = format!(
        "compact --objstore.config-file={{data}} --data-dir={} --http-address=127.0.0.1:{{http}} --wait --wait-interval=24h --consistency-delay=0s --downsampling.disable",
        scratch.display()
    );
    let Some(mut t) = target(o, "compact", "compact", &args, &objstore)? else {
        return Ok(None);
    };
    let started = Instant::now();
    let limit = started + o.duration * 10;
    while t
        .metric_sum("thanos_compact_iterations_total")
        .unwrap_or(0.0)
        < 1.0
    {
        if Instant::now() > limit {
            return Err(RunError::Start(format!(
                "gauntlet compact did not finish a pass in {:?}",
                o.duration * 10
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let written = t
        .metric_sum("gauntlet_compact_samples_written_total")
        .unwrap_or(0.0);
    let merge_s = t
        .metric_sum("gauntlet_compact_merge_seconds_total")
        .unwrap_or(0.0);
    let compactions = t
        .metric_sum("thanos_compact_group_compactions_total")
        .unwrap_or(0.0);
    let stats = t.stats();
    let wall = started.elapsed().as_secs_f64();
    t.stop();
    let live = std::fs::read_dir(&bucket)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path().join("meta.json").is_file() && !e.path().join("deletion-mark.json").exists()
        })
        .count();
    Ok(Some(Figures {
        system: t.name.clone(),
        throughput: if merge_s > 0.0 {
            written / merge_s
        } else {
            0.0
        },
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_s: stats.map(|s| s.cpu_s),
        peak_rss_bytes: stats.map(|s| s.peak_rss_bytes),
        notes: format!(
            "{compactions:.0} compactions merging {written:.0} samples in {merge_s:.2} s (copies into and out of the bucket not counted); {before} blocks → {live}; CPU and RSS are the whole process lifetime ({wall:.1} s, one pass)"
        ),
    }))
}

/// Samples Prometheus's logged "compact blocks" steps wrote: each step the samples of its
/// `sources` (blocks of `src` by their meta.json, or earlier steps' output by their `ulid`).
fn samples_written(src: &Path, lines: &[&str]) -> f64 {
    let mut samples: std::collections::HashMap<String, f64> = std::fs::read_dir(src)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| {
                    let meta = std::fs::read(e.path().join("meta.json")).ok()?;
                    let v: serde_json::Value = serde_json::from_slice(&meta).ok()?;
                    let n = v["stats"]["numSamples"].as_f64()?;
                    Some((e.file_name().to_string_lossy().into_owned(), n))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut written = 0.0;
    for line in lines {
        let field = |name: &str| {
            line.split(&format!(" {name}="))
                .nth(1)
                .map(|rest| {
                    if let Some(quoted) = rest.strip_prefix('"') {
                        quoted.split('"').next().unwrap_or("")
                    } else {
                        rest.split_whitespace().next().unwrap_or("")
                    }
                })
                .unwrap_or("")
        };
        let out: f64 = field("sources")
            .trim_matches(['[', ']'])
            .split_whitespace()
            .filter_map(|id| samples.get(id))
            .sum();
        samples.insert(field("ulid").to_string(), out);
        written += out;
    }
    written
}

/// The `duration=…` field of a Prometheus log line, in seconds (`1.5s`, `850ms`, `1m2.5s`).
fn log_duration_s(line: &str) -> Option<f64> {
    let v = line.split("duration=").nth(1)?.split_whitespace().next()?;
    let v = v.trim_matches('"');
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                1e-3
            }
            ('µ' | 'u', Some('s')) => {
                chars.next();
                1e-6
            }
            ('n', Some('s')) => {
                chars.next();
                1e-9
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
    }
    Some(total)
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
    use super::{log_duration_s, samples_written, short_count};

    #[test]
    fn counts_are_shortened() {
        assert_eq!(short_count(1_162_800), "1.16M");
        assert_eq!(short_count(116_280), "116k");
        assert_eq!(short_count(3_700), "3700");
    }

    #[test]
    fn samples_written_follow_each_step_to_its_sources() {
        let src = tempfile::tempdir().unwrap();
        for (id, n) in [("A", 10), ("B", 20), ("C", 30)] {
            let dir = src.path().join(id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("meta.json"),
                format!("{{\"stats\":{{\"numSamples\":{n}}}}}"),
            )
            .unwrap();
        }
        let lines = [
            r#"level=INFO msg="compact blocks" count=2 ulid=X sources="[A B]" duration=1s"#,
            r#"level=INFO msg="compact blocks" count=2 ulid=Y sources="[X C]" duration=1s"#,
        ];
        // X writes 30 samples, Y writes X's 30 and C's 30 again.
        assert_eq!(samples_written(src.path(), &lines), 90.0);
    }

    #[test]
    fn go_durations_in_logs() {
        assert_eq!(
            log_duration_s("msg=\"compact blocks\" duration=1.5s x=1"),
            Some(1.5)
        );
        assert_eq!(log_duration_s("duration=850ms"), Some(0.85));
        assert_eq!(log_duration_s("duration=1m2.5s"), Some(62.5));
        assert_eq!(log_duration_s("nothing"), None);
    }
}
