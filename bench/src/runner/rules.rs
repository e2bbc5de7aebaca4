//! The `rules` scenario: the same recording rules evaluated by Prometheus 3.x (`rule_files`,
//! `global.evaluation_interval`) and by `gauntlet all` (`--rule-file`, `--eval-interval`), each
//! over its own head holding the same remote-written samples.
//!
//! Each side in turn: the server starts with the rule file; a history of the generated data
//! ending now is remote-written once (one pass over the data, as fast as it is taken), then the
//! data after it is written at the pace of its scrapes for a few warm-up rounds; the writer then stops and the measured window
//! of N evaluation rounds runs with no ingest at all, so the process's CPU in the window is the
//! rules' (the newest data is then at most a few minutes old, inside every `[5m]` range). The
//! rounds are counted from `prometheus_rule_group_iterations_total`, and the evaluation time of a
//! round is the sum over groups of `prometheus_rule_group_last_duration_seconds`, read once a
//! round. At the end both are asked how many series each rule name recorded, so the comparison
//! is of equal work.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::current::{Figure, Recorded};
use super::querier::import;
use super::report::{machine_description, ratio, utc_now};
use super::scenarios::{
    READY_WAIT, input_name, now_ms, prometheus_bin, prometheus_name, series_suffix, target_with,
};
use super::server::{Server, free_port};
use super::{RunError, RunOptions};
use crate::datagen::GenConfig;
use crate::load::remote_write as rwload;
use crate::load::stats::RssSampler;
use crate::remote_write::{BatchConfig, encode_stream};

/// How often rules are evaluated on both sides, ms (Prometheus's `evaluation_interval`).
pub const EVAL_INTERVAL_MS: i64 = 15_000;

/// Evaluation rounds with the data kept current before the measured window.
const WARMUP_ROUNDS: u32 = 3;

/// How often the resident set is sampled during the window.
const RSS_EVERY: Duration = Duration::from_millis(200);

/// Rule templates, one per host: the record name and the expression, `{h}` standing for the
/// host (`host-0001`). Every rule also gets the label `host`, so no two rules write one series.
const TEMPLATES: [(&str, &str); 15] = [
    (
        "host:node_cpu:rate5m",
        r#"sum by (mode) (rate(node_cpu_seconds_total{instance="{h}:9100"}[5m]))"#,
    ),
    (
        "host:node_cpu_busy:ratio_rate5m",
        r#"1 - avg(rate(node_cpu_seconds_total{instance="{h}:9100",mode="idle"}[5m]))"#,
    ),
    (
        "host:node_cpu:count",
        r#"count by (mode) (node_cpu_seconds_total{instance="{h}:9100"})"#,
    ),
    (
        "host:node_memory_available:avg5m",
        r#"avg_over_time(node_memory_MemAvailable_bytes{instance="{h}:9100"}[5m])"#,
    ),
    (
        "host:node_filesystem_avail:min",
        r#"min by (mountpoint) (node_filesystem_avail_bytes{instance="{h}:9100"})"#,
    ),
    (
        "host:node_network_receive:rate5m",
        r#"sum by (device) (rate(node_network_receive_bytes_total{instance="{h}:9100"}[5m]))"#,
    ),
    (
        "host:kube_pod_phase:sum",
        r#"sum by (namespace, phase) (kube_pod_status_phase{instance="{h}:8080"})"#,
    ),
    (
        "host:kube_restarts:increase5m",
        r#"max by (namespace) (increase(kube_pod_container_status_restarts_total{instance="{h}:8080"}[5m]))"#,
    ),
    (
        "host:http_requests:rate5m",
        r#"sum by (handler, code) (rate(http_requests_total{instance="{h}:8081"}[5m]))"#,
    ),
    (
        "host:http_errors:ratio_rate5m",
        r#"sum(rate(http_requests_total{instance="{h}:8081",code="500"}[5m])) / sum(rate(http_requests_total{instance="{h}:8081"}[5m]))"#,
    ),
    (
        "host:http_latency:mean5m",
        r#"sum by (handler) (rate(http_request_duration_seconds_sum{instance="{h}:8081"}[5m])) / sum by (handler) (rate(http_request_duration_seconds_count{instance="{h}:8081"}[5m]))"#,
    ),
    (
        "host:http_buckets:rate5m",
        r#"sum by (le) (rate(http_request_duration_seconds_bucket{instance="{h}:8081"}[5m]))"#,
    ),
    (
        "host:http_in_flight:max",
        r#"max(http_requests_in_flight{instance="{h}:8081"})"#,
    ),
    (
        "host:http_in_flight:max5m",
        r#"max_over_time(http_requests_in_flight{instance="{h}:8081"}[5m])"#,
    ),
    (
        "host:http_requests:count_nonzero",
        r#"count(http_requests_total{instance="{h}:8081"} > 0)"#,
    ),
];

/// The scenario's own knobs.
#[derive(Clone, Debug)]
pub struct RulesOptions {
    /// Recording rules in the file.
    pub rules: usize,
    /// Rules per group.
    pub group_size: usize,
    /// Evaluation rounds measured.
    pub rounds: u32,
}

/// What one side measured over the window.
#[derive(Clone, Debug, Default)]
struct RulesFigures {
    system: String,
    /// Series written.
    series: u64,
    /// Samples of the history written.
    history_samples: u64,
    /// Rounds evaluated in the window (group iterations / groups).
    rounds: f64,
    /// CPU of the process over the window, s.
    cpu_s: Option<f64>,
    /// Summed `prometheus_rule_group_last_duration_seconds`, one reading a round, s.
    eval_s: Vec<f64>,
    /// Group iterations missed in the window.
    missed: f64,
    /// Rule evaluations that failed in the window.
    failures: f64,
    /// Peak resident set over the window, bytes.
    peak_rss_bytes: Option<u64>,
    /// Series recorded per rule name at the end.
    recorded: BTreeMap<String, u64>,
    notes: String,
}

impl RulesFigures {
    fn cpu_per_round(&self) -> Option<f64> {
        self.cpu_s
            .filter(|_| self.rounds > 0.0)
            .map(|c| c / self.rounds)
    }

    fn eval_per_round(&self) -> Option<f64> {
        (!self.eval_s.is_empty())
            .then(|| self.eval_s.iter().sum::<f64>() / self.eval_s.len() as f64)
    }

    fn recorded_total(&self) -> u64 {
        self.recorded.values().sum()
    }
}

/// Writes the rule file: `rules` recording rules cycling through [`TEMPLATES`] host by host
/// (`targets` hosts), in groups of `group_size` evaluated every [`EVAL_INTERVAL_MS`]; returns
/// the number of groups.
pub fn write_rule_file(
    path: &Path,
    rules: usize,
    group_size: usize,
    targets: usize,
) -> std::io::Result<usize> {
    let mut s = String::from("groups:\n");
    let groups = rules.div_ceil(group_size.max(1));
    let per_round = TEMPLATES.len() * targets.max(1);
    for g in 0..groups {
        let _ = write!(
            s,
            "  - name: rules-{g:04}\n    interval: {}s\n    rules:\n",
            EVAL_INTERVAL_MS / 1000
        );
        for i in g * group_size..((g + 1) * group_size).min(rules) {
            let (record, expr) = TEMPLATES[i % TEMPLATES.len()];
            let host = format!("host-{:04}", (i / TEMPLATES.len()) % targets.max(1));
            let _ = write!(
                s,
                "      - record: {record}\n        expr: '{}'\n        labels:\n          host: {host}\n",
                expr.replace("{h}", &host)
            );
            // More rules than templates × hosts: the copies differ by a label of their own.
            if i >= per_round {
                let _ = writeln!(s, "          copy: \"{}\"", i / per_round);
            }
        }
    }
    std::fs::write(path, s)?;
    Ok(groups)
}

/// The `rules` scenario (see the module's documentation).
pub fn rules(o: &RunOptions, r: &RulesOptions) -> Result<Recorded, RunError> {
    if r.rules == 0 || r.group_size == 0 || r.rounds == 0 {
        return Err(RunError::Other(
            "--rules, --group-size and --rounds must be positive".into(),
        ));
    }
    let dir = o.work_dir.join("rules");
    std::fs::create_dir_all(&dir)?;
    let rule_file = dir.join("rules.yml");
    let groups = write_rule_file(&rule_file, r.rules, r.group_size, o.data.targets)?;
    eprintln!(
        "{} rules in {groups} groups in {}",
        r.rules,
        rule_file.display()
    );

    let mut p = prometheus_side(o, &rule_file)?;
    let base = measure(o, r, groups, &p, &format!("{}/api/v1/write", p.url))?;
    p.stop();
    drop(p);
    let tgt = match gauntlet_side(o, &rule_file)? {
        Some(mut g) => {
            let f = measure(o, r, groups, &g, &format!("{}/api/v1/receive", g.url))?;
            g.stop();
            Some(f)
        }
        None => None,
    };

    let mut input = input_name(o, &[]);
    let _ = write!(
        input,
        ", {} recording rules in groups of {} every {} s",
        r.rules,
        r.group_size,
        EVAL_INTERVAL_MS / 1000
    );
    input.push_str(&series_suffix(&[base.series]));
    let section = render(o, r, groups, &base, tgt.as_ref());
    let rss = |f: &RulesFigures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
    let t = tgt.as_ref();
    let figures = vec![
        Figure::new(
            "CPU per evaluation round (no ingest in the window), s",
            t.and_then(RulesFigures::cpu_per_round),
            base.cpu_per_round(),
            3,
        ),
        Figure::new(
            "evaluation time per round (sum of prometheus_rule_group_last_duration_seconds), s",
            t.and_then(RulesFigures::eval_per_round),
            base.eval_per_round(),
            3,
        ),
        Figure::new(
            "peak RSS during the window, MiB",
            t.and_then(rss),
            rss(&base),
            0,
        ),
    ];
    Ok(Recorded {
        scenario: "rules",
        input,
        section,
        figures,
    })
}

/// Prometheus 3.x with the rule file, evaluating every [`EVAL_INTERVAL_MS`], receiving remote
/// write into its own TSDB under the work dir.
fn prometheus_side(o: &RunOptions, rule_file: &Path) -> Result<Server, RunError> {
    if let Some(u) = &o.baseline_url {
        return Ok(Server::external("baseline (external)", u, o.baseline_pid));
    }
    let bin = prometheus_bin(o)?;
    let dir = o.work_dir.join("rules-prometheus");
    let data = o.work_dir.join("rules-prometheus-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1h\n  evaluation_interval: {}s\nrule_files:\n  - {}\n",
            EVAL_INTERVAL_MS / 1000,
            rule_file.display()
        ),
    )?;
    let port = free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver");
    Server::start(
        &prometheus_name(&bin),
        cmd,
        format!("http://127.0.0.1:{port}"),
        &dir.join("log.txt"),
        READY_WAIT,
    )
}

/// `gauntlet all` with the rule file; `None` without a Gauntlet binary, or when its `all`
/// evaluates no rules yet (no `--rule-file`).
fn gauntlet_side(o: &RunOptions, rule_file: &Path) -> Result<Option<Server>, RunError> {
    if o.target_url.is_none()
        && let Some(bin) = &o.gauntlet_bin
    {
        let help = Command::new(bin).args(["all", "--help"]).output()?;
        if !String::from_utf8_lossy(&help.stdout).contains("--rule-file") {
            eprintln!(
                "{}: `all` has no --rule-file yet; measuring Prometheus alone",
                bin.display()
            );
            return Ok(None);
        }
    }
    let data: PathBuf = o.work_dir.join("rules-gauntlet-data");
    let _ = std::fs::remove_dir_all(&data);
    target_with(
        o,
        "rules",
        "all",
        &format!(
            "all --http-address=127.0.0.1:{{http}} --grpc-address=127.0.0.1:{{grpc}} \
             --data-dir={{data}} --remote-write.address=127.0.0.1:0 --rule-file={{rules}} \
             --eval-interval={}s",
            EVAL_INTERVAL_MS / 1000
        ),
        &data,
        &[("rules", rule_file.display().to_string())],
    )
}

/// Writes the history and keeps it current for the warm-up, then measures `s` over the window.
fn measure(
    o: &RunOptions,
    r: &RulesOptions,
    groups: usize,
    s: &Server,
    write_url: &str,
) -> Result<RulesFigures, RunError> {
    let interval = o.data.scrape_interval_ms;
    // The history ends now, on the scrape grid, and is sent once, as fast as it is taken.
    let history = GenConfig {
        start_ms: (now_ms() - o.data.duration_ms) / interval * interval,
        ..o.data.clone()
    };
    let t = Instant::now();
    let (samples, series) = import(&history, write_url)?;
    eprintln!(
        "{}: history of {series} series, {samples} samples in {:.1} s",
        s.name,
        t.elapsed().as_secs_f64()
    );
    // Kept current: the data right after the history, at the pace of its scrapes.
    let warmup_ms = EVAL_INTERVAL_MS * i64::from(WARMUP_ROUNDS);
    let ahead = GenConfig {
        start_ms: history.start_ms + history.duration_ms,
        duration_ms: warmup_ms,
        ..o.data.clone()
    };
    let batch = BatchConfig {
        shards: o.connections,
        ..BatchConfig::default()
    };
    let current = rwload::run(
        encode_stream(&ahead, &batch)?,
        &rwload::RemoteWriteOptions {
            url: write_url.to_string(),
            rate: Some(series as f64 * 1000.0 / interval as f64),
            duration: Duration::from_millis(warmup_ms as u64),
            timeout: Duration::from_secs(60),
            time_shift_ms: 0,
        },
    )?;
    eprintln!(
        "{}: kept current for the warm-up\n{}",
        s.name,
        current.render()
    );
    let mut notes = format!(
        "{samples} history samples and {} current ones acknowledged",
        current.acked_samples
    );
    for (code, n) in &current.non_2xx {
        let _ = write!(notes, "; {n}× HTTP {code}");
    }

    let counter = |name: &str| s.metric_sum(name).unwrap_or(0.0);
    let (it0, missed0, fail0) = (
        counter("prometheus_rule_group_iterations_total"),
        counter("prometheus_rule_group_iterations_missed_total"),
        counter("prometheus_rule_evaluation_failures_total"),
    );
    let before = s.stats();
    let sampler = s.pid.map(|p| RssSampler::start(p, RSS_EVERY));
    let start = Instant::now();
    let mut eval_s = Vec::new();
    for round in 1..=r.rounds {
        let due = start + Duration::from_millis(EVAL_INTERVAL_MS as u64 * u64::from(round));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if let Some(v) = s.metric_sum("prometheus_rule_group_last_duration_seconds") {
            eval_s.push(v);
        }
    }
    let after = s.stats();
    let rss = sampler.map(RssSampler::finish);
    let iterations = counter("prometheus_rule_group_iterations_total") - it0;
    let f = RulesFigures {
        system: s.name.clone(),
        series: series as u64,
        history_samples: samples,
        rounds: iterations / groups as f64,
        cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
        eval_s,
        missed: counter("prometheus_rule_group_iterations_missed_total") - missed0,
        failures: counter("prometheus_rule_evaluation_failures_total") - fail0,
        peak_rss_bytes: rss.map(|p| p.peak_bytes()),
        recorded: recorded_per_name(s)?,
        notes,
    };
    eprintln!(
        "{}: {:.1} rounds in {:.0} s, CPU {} s, evaluation {} s a round, {} series recorded",
        f.system,
        f.rounds,
        start.elapsed().as_secs_f64(),
        f.cpu_s.map_or("n/a".into(), |c| format!("{c:.2}")),
        f.eval_per_round()
            .map_or("n/a".into(), |e| format!("{e:.3}")),
        f.recorded_total()
    );
    Ok(f)
}

/// How many series each recording rule name holds now (`count by (__name__)` over the rules'
/// names), from the server's query API.
fn recorded_per_name(s: &Server) -> Result<BTreeMap<String, u64>, RunError> {
    let mut q = String::new();
    crate::load::http::urlencode(r#"count by (__name__) ({__name__=~"host:.+"})"#, &mut q);
    let (status, body) = s.get(&format!("/api/v1/query?query={q}"))?;
    if status != 200 {
        return Err(RunError::Other(format!(
            "{}: counting the recorded series: status {status}: {}",
            s.name,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| RunError::Other(format!("{}: counting the recorded series: {e}", s.name)))?;
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().into_iter().flatten() {
        let name = r["metric"]["__name__"].as_str().unwrap_or("").to_string();
        let n = r["value"][1]
            .as_str()
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0);
        out.insert(name, n as u64);
    }
    Ok(out)
}

/// The run's dated section: a row per side, their ratio, and the recorded series compared.
fn render(
    o: &RunOptions,
    r: &RulesOptions,
    groups: usize,
    base: &RulesFigures,
    tgt: Option<&RulesFigures>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run rules`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(
        s,
        "Input: {}; {} series, the history of {} min ({} samples) remote-written once, flat \
         out, ending now, then kept current for {WARMUP_ROUNDS} rounds; {} recording rules ({} \
         templates per host, `rate`/`increase` over `[5m]`, `sum`/`avg`/`min`/`max`/`count` by \
         labels, `*_over_time`, ratios) in {groups} groups of {}, every {} s, the same file for \
         both. Measured: {} rounds with no ingest (the writer stopped before the window), so the \
         CPU is the rules' alone.",
        super::scenarios::input_text(o),
        base.series,
        o.data.duration_ms / 60_000,
        base.history_samples,
        r.rules,
        TEMPLATES.len(),
        r.group_size,
        EVAL_INTERVAL_MS / 1000,
        r.rounds,
    );
    let _ = writeln!(s, "Command: `{}`\n", o.command_line);
    let _ = writeln!(
        s,
        "| system | rounds | CPU s per round | evaluation s per round | CPU s in the window | \
         peak RSS MiB | series recorded | missed / failed | notes |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    let num = |v: Option<f64>, d: usize| v.map_or("n/a".into(), |v| format!("{v:.d$}"));
    let mib = |f: &RulesFigures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
    for f in std::iter::once(base).chain(tgt) {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {:.0} / {:.0} | {} |",
            f.system,
            f.rounds,
            num(f.cpu_per_round(), 3),
            num(f.eval_per_round(), 3),
            num(f.cpu_s, 2),
            num(mib(f), 0),
            f.recorded_total(),
            f.missed,
            f.failures,
            f.notes
        );
    }
    match tgt {
        Some(t) => {
            let cell = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                s,
                "| ratio target / baseline | | {} | {} | {} | {} | | | |",
                cell(t.cpu_per_round(), base.cpu_per_round()),
                cell(t.eval_per_round(), base.eval_per_round()),
                cell(t.cpu_s, base.cpu_s),
                cell(mib(t), mib(base)),
            );
            let differ: Vec<String> = base
                .recorded
                .keys()
                .chain(t.recorded.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| base.recorded.get(*k) != t.recorded.get(*k))
                .map(|k| {
                    format!(
                        "`{k}` {} / {}",
                        base.recorded.get(k).copied().unwrap_or(0),
                        t.recorded.get(k).copied().unwrap_or(0)
                    )
                })
                .collect();
            if differ.is_empty() {
                let _ = writeln!(
                    s,
                    "\nBoth record the same number of series for each of the {} rule names \
                     ({} in all).",
                    base.recorded.len(),
                    base.recorded_total()
                );
            } else {
                let _ = writeln!(
                    s,
                    "\nRecorded series differ (Prometheus / Gauntlet): {}.",
                    differ.join(", ")
                );
            }
        }
        None => {
            let _ = writeln!(
                s,
                "\nNo Gauntlet figures: no `--gauntlet-bin`, or its `all` evaluates no rules yet."
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_file_cycles_templates_host_by_host_in_groups() {
        let dir = std::env::temp_dir().join(format!("gauntlet-bench-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules.yml");
        let groups = write_rule_file(&path, 35, 10, 2).unwrap();
        assert_eq!(groups, 4);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("- record: ").count(), 35);
        assert_eq!(text.matches("  - name: rules-").count(), 4);
        assert!(text.contains(r#"instance="host-0001:9100""#));
        assert!(!text.contains("{h}"));
        // 15 templates × 2 hosts = 30 distinct rules; the 5 beyond are copies.
        assert_eq!(text.matches("copy: \"1\"").count(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
